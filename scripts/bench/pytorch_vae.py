"""The PyTorch example's VAE (pytorch/examples vae/main.py) and its training loop, for
comparisons only: torch is imported by these functions, never by the project.

784-400-20 relu MLP, Bernoulli decoder, closed-form KL, Adam(1e-3, PyTorch's defaults),
batch 128 shuffled every epoch (the last batch smaller), PyTorch's default nn.Linear
initialisation, constant learning rate; the digits binarised afresh every epoch
(torch.bernoulli), as our trainer's "dynamic" binarisation does.
"""

from __future__ import annotations

import importlib

import numpy as np


def available() -> str | None:
  """None if torch imports, else the reason it does not."""
  try:
    importlib.import_module("torch")  # a wheel without its CUDA libraries fails here
  except ImportError as error:
    return str(error)
  return None


def train(images: np.ndarray, epochs: int, seed: int, batch_size: int = 128,
          learning_rate: float = 1e-3, hidden: int = 400, latent: int = 20
          ) -> dict[str, np.ndarray]:
  """Trains the example's model on `images` (N, 28, 28, 1) in [0, 1] for `epochs`.

  Returns:
    Its weights as numpy, keyed by the example's layer names (fc1, fc21, fc22, fc3, fc4),
    each "<name>.weight" (out, in) and "<name>.bias" (out,).
  """
  import torch  # pylint: disable=import-outside-toplevel
  import torch.nn.functional as F  # pylint: disable=import-outside-toplevel
  from torch import nn  # pylint: disable=import-outside-toplevel

  torch.manual_seed(seed)

  class VAE(nn.Module):

    def __init__(self):
      super().__init__()
      self.fc1, self.fc21, self.fc22 = (nn.Linear(784, hidden), nn.Linear(hidden, latent),
                                        nn.Linear(hidden, latent))
      self.fc3, self.fc4 = nn.Linear(latent, hidden), nn.Linear(hidden, 784)

    def forward(self, x):
      h = F.relu(self.fc1(x))
      mu, logvar = self.fc21(h), self.fc22(h)
      z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
      return self.fc4(F.relu(self.fc3(z))), mu, logvar

  model = VAE()
  optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate)
  pixels = torch.from_numpy(np.array(images, np.float32).reshape(len(images), -1))
  loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(pixels),
                                       batch_size=batch_size, shuffle=True)
  for _ in range(epochs):
    for (batch,) in loader:
      x = torch.bernoulli(batch)
      logits, mu, logvar = model(x)
      reconstruction = F.binary_cross_entropy_with_logits(logits, x, reduction="sum")
      kl = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
      optimizer.zero_grad()
      (reconstruction + kl).backward()
      optimizer.step()
  return {name: value.detach().numpy() for name, value in model.state_dict().items()}


def as_flax_params(weights: dict[str, np.ndarray]) -> dict:
  """The example's weights as the params of our MLP VAE of the same shape
  (`config.model.hidden_sizes=(400,)`, `latent_dim=20`): kernels are the transposes."""
  dense = lambda name: {"kernel": weights[f"{name}.weight"].T, "bias": weights[f"{name}.bias"]}
  return {"encoder": {"Dense_0": dense("fc1"), "mean": dense("fc21"), "logvar": dense("fc22")},
          "decoder": {"Dense_0": dense("fc3"), "Dense_1": dense("fc4")}}
