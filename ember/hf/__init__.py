"""Hugging Face models through ember: batches for fit(), export with the tokenizer.

    model = ember.wrap(AutoModelForSequenceClassification.from_pretrained(path, num_labels=2))
    train = ember.hf.text_classification_data(tokenizer, texts, labels, model=model, shuffle=True)
    model.compile(optimizer="adamw", lr=5e-5, weight_decay=0.01, lr_schedule="linear",
                  lr_schedule_interval="batch", warmup_steps=0.1, metrics=["accuracy"])
    model.fit(train, validation_data=val, epochs=1)
"""
from ember.hf.csv_text import read_text_csv
from ember.hf.data import TextClassificationData, text_classification_data

__all__ = ["TextClassificationData", "read_text_csv", "text_classification_data"]
