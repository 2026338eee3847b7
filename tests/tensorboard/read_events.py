"""Reads a run directory's TensorBoard event files with TensorBoard's own
loader and prints what it found as JSON: every scalar series
(tag -> [[step, value], ...]) and every text series (tag -> [[step, text]]).
Used by tests/tensorboard_readback.rs; needs the PyPI `tensorboard` package."""

import json
import sys

from tensorboard.backend.event_processing import event_accumulator


def main(run_dir):
    acc = event_accumulator.EventAccumulator(
        run_dir, size_guidance={"scalars": 0, "tensors": 0}
    )
    acc.Reload()
    tags = acc.Tags()
    scalars = {
        tag: [[e.step, e.value] for e in acc.Scalars(tag)] for tag in tags["scalars"]
    }
    texts = {}
    for tag in tags.get("tensors", []):
        events = acc.Tensors(tag)
        texts[tag] = [
            [e.step, e.tensor_proto.string_val[0].decode("utf-8")] for e in events
        ]
    print(json.dumps({"scalars": scalars, "texts": texts}))


if __name__ == "__main__":
    main(sys.argv[1])
