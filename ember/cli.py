"""The `ember` command. Each capability registers its own sub-command; this file only wires them."""
import argparse
import importlib
import sys

# (sub-command, module defining `add_arguments(parser)` and `run(args) -> int`, one-line help)
COMMANDS = [
    ("demo", "ember.demo", "train the seed's ConvNet on digits, evaluate, export, print the report"),
    ("export", "ember.export_command", "export a model file to onnx, program, int8, tflite, pte, web; check each"),
    ("convert", "ember.keras.cli", "convert a Keras .keras/.h5 model to an ember model file (no TensorFlow)"),
    ("serve", "ember.serve.cli", "serve exports over TF Serving and KServe v2 REST, with dynamic batching"),
    ("serve-web", "ember.deploy.web_server", "serve a web bundle with the headers multi-threaded wasm needs"),
    ("launch", "ember.distributed.launch", "run a training script on N processes or machines (torchrun)"),
]


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(prog="ember", description="Keras-grade workflows for PyTorch models")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, module_name, help_text in COMMANDS:
        command = sub.add_parser(name, help=help_text, description=help_text)
        if argv[:1] == [name]:  # only the chosen command's module: `ember serve` must not load torch
            module = importlib.import_module(module_name)
            module.add_arguments(command)
            command.set_defaults(run=module.run)
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        return 130
    except (ValueError, FileNotFoundError, RuntimeError) as error:
        print(f"ember {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
