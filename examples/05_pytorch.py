"""A small PyTorch network with per-epoch metrics and a logged, registered model.

pip install torch==2.13.0   # CPU wheel
python examples/05_pytorch.py --epochs 30 --model-name iris-torch
"""

from __future__ import annotations

import argparse
import json
import sys

import mlflow
import numpy as np
from _common import iris_split, require_server
from mlflow.models import infer_signature

try:
    import torch
    from torch import nn
except ImportError:
    sys.exit("error: this example needs PyTorch: pip install torch==2.13.0 (the CPU wheel)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiment", default="examples-iris-torch")
    parser.add_argument("--model-name", default=None, help="register the model under this name")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--lr", type=float, default=0.05)
    args = parser.parse_args()
    require_server()

    torch.manual_seed(0)
    x_train, x_test, y_train, y_test = iris_split()
    mean, std = x_train.mean(), x_train.std()
    xt = torch.tensor(((x_train - mean) / std).to_numpy(), dtype=torch.float32)
    yt = torch.tensor(y_train.to_numpy(), dtype=torch.long)
    xv = torch.tensor(((x_test - mean) / std).to_numpy(), dtype=torch.float32)
    yv = torch.tensor(y_test.to_numpy(), dtype=torch.long)
    model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 3))
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    loss_fn = nn.CrossEntropyLoss()

    mlflow.set_experiment(args.experiment)
    with mlflow.start_run(run_name="mlp") as run:
        mlflow.log_params({"epochs": args.epochs, "lr": args.lr, "hidden": 16})
        for epoch in range(args.epochs):
            model.train()
            optimizer.zero_grad()
            loss = loss_fn(model(xt), yt)
            loss.backward()
            optimizer.step()
            model.eval()
            with torch.no_grad():
                val_logits = model(xv)
                val_loss = loss_fn(val_logits, yv).item()
                accuracy = (val_logits.argmax(1) == yv).float().mean().item()
            mlflow.log_metrics(
                {"train_loss": loss.item(), "val_loss": val_loss, "accuracy": accuracy},
                step=epoch,
            )
        sample = xv[:5].numpy()
        with torch.no_grad():
            signature = infer_signature(sample, model(xv[:5]).numpy())
        info = mlflow.pytorch.log_model(
            model,
            name="model",
            signature=signature,
            input_example=sample,
            registered_model_name=args.model_name,
        )
    loaded = mlflow.pyfunc.load_model(info.model_uri)
    same = np.allclose(loaded.predict(sample), model(torch.from_numpy(sample)).detach().numpy())
    print(
        json.dumps(
            {
                "run_id": run.info.run_id,
                "accuracy": accuracy,
                "version": info.registered_model_version,
                "reloaded_predictions_match": bool(same),
            }
        )
    )


if __name__ == "__main__":
    main()
