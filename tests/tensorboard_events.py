"""Reading a run's TensorBoard event files back, for the tests."""

import os

from tensorboardX.proto import event_pb2


def tensorboard_events(folder):
  """Every Event of the TensorBoard files directly in `folder` (TFRecords: length, CRC,
  data, CRC)."""
  events = []
  for name in sorted(n for n in os.listdir(folder) if n.startswith("events.out")):
    with open(os.path.join(folder, name), "rb") as f:
      while header := f.read(12):
        data = f.read(int.from_bytes(header[:8], "little"))
        f.read(4)
        events.append(event_pb2.Event.FromString(data))
  assert events, "no TensorBoard events"
  return events
