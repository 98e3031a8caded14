"""The trainer's loader: persistent workers still draw each epoch's own augmentation, in the seeded order."""
import pytest
import torch

from centernet.app.builders import model_from_config, open_source, task_from_config
from centernet.engine.batches import train_dataset
from centernet.config import DataConfig, ExperimentConfig, ModelConfig, TaskConfig, TrainConfig
from centernet.data import make_synthetic_dataset
from centernet.data.pipeline import collate
from centernet.engine.trainer import Trainer


def expected_batches(cfg: ExperimentConfig, source, task, epoch: int) -> list[dict[str, torch.Tensor]]:
    """Batches as a fresh single-process pass computes them: randperm(seed + epoch), items of ``epoch``."""
    dataset = train_dataset(cfg, source, task)
    dataset.set_epoch(epoch)
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(cfg.train.seed + epoch)).tolist()
    b = cfg.train.batch_size
    return [collate([dataset[i] for i in order[k : k + b]]) for k in range(0, len(order) - b + 1, b)]


@pytest.mark.parametrize("workers", [0, 1])
def test_loader_serves_each_epochs_draws_in_order(tmp_path, workers):
    paths = make_synthetic_dataset(tmp_path, num_train=6, num_val=1, image_size=(64, 64))
    cfg = ExperimentConfig(
        model=ModelConfig(arch="resdcn_18_tiny"),
        data=DataConfig(input_size=(64, 64), num_workers=workers, random_crop=False),  # colour, flip, jitter on
        task=TaskConfig(num_classes=3),
        train=TrainConfig(batch_size=3, seed=4, out_dir=str(tmp_path / "run"), device="cpu"),
    )
    source = open_source(str(paths["train_ann"]))
    task = task_from_config(cfg)
    trainer = Trainer(cfg, model_from_config(cfg, task), task, source, progress=False)
    loader = trainer._loader(0)
    seen = []
    for epoch in (0, 1, 2):
        assert trainer._loader(epoch) is loader  # one loader, its workers persist
        got, want = list(loader), expected_batches(cfg, source, task, epoch)
        assert len(got) == len(want) == 2
        for g, w in zip(got, want):
            assert g.keys() == w.keys()
            for key in w:
                torch.testing.assert_close(g[key], w[key], rtol=0, atol=0, msg=key)
        seen.append(got[0]["input"])
    assert not torch.equal(seen[0], seen[1]) and not torch.equal(seen[1], seen[2])
