"""`ember convert model.keras --out model.ember`: a Keras file to an ember model file."""
from pathlib import Path

from ember.keras.convert import from_keras


def add_arguments(parser):
    parser.add_argument("source", help="a Keras .keras or .h5 model file")
    parser.add_argument("--out", help="the ember model file to write (default: SOURCE with .ember)")
    parser.add_argument("--data-format", default="channels_last", choices=["channels_last", "channels_first"],
                        help="channels_last keeps the Keras model's NHWC inputs; channels_first takes NCHW")


def run(args) -> int:
    out = Path(args.out) if args.out else Path(args.source).with_suffix(".ember")
    model = from_keras(args.source, data_format=args.data_format)
    model.save(out)
    params = sum(p.numel() for p in model.parameters())
    print(f"{args.source} -> {out}: {type(model).__name__}, {params:,} parameters ({args.data_format})")
    return 0
