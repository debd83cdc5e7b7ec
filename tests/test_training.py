"""Tests for hmmrnn.training: reproducibility, learning, best-weights copy, exact resume."""

import numpy as np
import pytest
import torch

from hmmrnn._utils import torch_generator
from hmmrnn.checkpoint import CheckpointError, load_checkpoint
from hmmrnn.model import NoiseRNN, generate
from hmmrnn.training import Trainer, sweep_learning_rates

IN, H, OUT, T = 4, 16, 3, 5


def markov_one_hot(n, seq_len, seed):
    """Sticky 2-state chain; state 0 emits symbols 0/1 (0.9/0.1), state 1 emits 2/1 (0.9/0.1)."""
    rng = np.random.default_rng(seed)
    emission = np.array([[0.9, 0.1, 0.0], [0.0, 0.1, 0.9]])
    states = np.zeros((n, seq_len), dtype=np.int64)
    states[:, 0] = rng.integers(0, 2, n)
    for t in range(1, seq_len):
        stay = rng.random(n) < 0.9
        states[:, t] = np.where(stay, states[:, t - 1], 1 - states[:, t - 1])
    u = rng.random((n, seq_len))[..., None]
    obs = (u > np.cumsum(emission[states], axis=-1)).sum(-1)
    return np.eye(OUT, dtype=np.float32)[obs]


TRAIN = markov_one_hot(256, T, 0)
VAL = markov_one_hot(128, T, 1)


def make_module(seed=0):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return NoiseRNN(IN, H, output_size=OUT, rnn_bias=True)


def trainer(module=None, **kw):
    kw = {"batch_size": 64, "epochs": 3, "learning_rate": 1e-2, "device": "cpu", **kw}
    return Trainer(module if module is not None else make_module(), **kw)


def assert_same_state(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


class MeanMatch:
    """Differentiable stand-in loss; ``offset_per_call`` makes later calls look worse."""

    def __init__(self, offset_per_call=0.0, fail_after=None):
        self.calls = 0
        self.offset_per_call = offset_per_call
        self.fail_after = fail_after

    def __call__(self, x, y):
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            raise KeyboardInterrupt("simulated preemption")
        return ((x.mean(0) - y.mean(0)) ** 2).sum() + self.offset_per_call * self.calls


def test_same_seed_same_weights_and_history():
    m1, m2 = make_module(), make_module()
    r1 = trainer(m1).fit(TRAIN, VAL)
    r2 = trainer(m2).fit(TRAIN, VAL)
    assert r1.train_loss == r2.train_loss and r1.val_loss == r2.val_loss
    assert_same_state(m1.state_dict(), m2.state_dict())
    r3 = trainer(make_module(), seed=1).fit(TRAIN, VAL)
    assert r3.train_loss != r1.train_loss


def test_training_decreases_sinkhorn_loss_and_matches_symbol_frequencies():
    train, val = markov_one_hot(512, T, 2), markov_one_hot(256, T, 3)
    m = make_module()
    tr = trainer(m, batch_size=128, epochs=8)
    # Untrained loss under the validation noise that fit() uses every epoch.
    before = tr.evaluate(torch.from_numpy(val), torch_generator(tr._val_seed))
    freq0 = generate(m, 2000, T, generator=torch.Generator().manual_seed(5)).outputs.mean((0, 1))
    res = tr.fit(train, val)
    freq1 = generate(m, 2000, T, generator=torch.Generator().manual_seed(5)).outputs.mean((0, 1))
    assert res.best_val_loss < 0.8 * before
    assert np.mean(res.val_loss[-3:]) < 0.85 * before
    target = torch.from_numpy(val.mean((0, 1)))
    # Untrained outputs are near uniform; the data emit the middle symbol only ~10 % of the time.
    assert (freq1 - target).abs().sum() < 0.5 * (freq0 - target).abs().sum()


def test_criterion_defaults_to_debiased_sinkhorn():
    crit = trainer().make_criterion()
    a = torch.from_numpy(TRAIN[:64].reshape(64, -1))
    b = torch.from_numpy(VAL[:64].reshape(64, -1))
    assert abs(crit(a, a).item()) < 1e-4  # debiased divergence of a cloud with itself is 0
    assert crit(a, b).item() > 0.05


def test_best_state_is_a_copy_of_the_best_epoch_weights():
    # The loss offset grows with every call, so epoch 0 has the lowest validation loss while
    # the weights keep changing afterwards.
    res = trainer(criterion=MeanMatch(offset_per_call=1.0), epochs=4).fit(TRAIN, VAL)
    assert res.best_epoch == 0 and res.best_val_loss == res.val_loss[0]
    one = make_module()
    trainer(one, criterion=MeanMatch(offset_per_call=1.0), epochs=1).fit(TRAIN, VAL)
    assert_same_state(res.best_state_dict, one.state_dict())
    last = make_module()
    trainer(last, criterion=MeanMatch(offset_per_call=1.0), epochs=4).fit(TRAIN, VAL)
    assert not torch.equal(res.best_state_dict["fc.weight"], last.state_dict()["fc.weight"])


def test_early_stopping():
    res = trainer(
        criterion=MeanMatch(offset_per_call=1.0), epochs=10, early_stopping_patience=2
    ).fit(TRAIN, VAL)
    assert res.stopped_early and res.epochs_run == 3 and len(res.val_loss) == 3


def test_resume_after_checkpoint_is_exact(tmp_path):
    straight = make_module()
    r_full = trainer(straight, epochs=6).fit(TRAIN, VAL)

    ckpt = tmp_path / "run" / "train_state.pth"
    r_half = trainer(make_module(), epochs=3, checkpoint_path=ckpt).fit(TRAIN, VAL)
    assert ckpt.exists() and r_half.epochs_run == 3
    assert load_checkpoint(ckpt)["extra"]["trainer_state"]["epoch"] == 3
    # A fresh module with other initial weights: everything must come from the checkpoint.
    resumed = make_module(seed=123)
    r_res = trainer(resumed, epochs=6, checkpoint_path=ckpt).fit(TRAIN, VAL)

    assert r_res.train_loss == r_full.train_loss and r_res.val_loss == r_full.val_loss
    assert (r_res.best_epoch, r_res.best_val_loss) == (r_full.best_epoch, r_full.best_val_loss)
    assert_same_state(resumed.state_dict(), straight.state_dict())
    assert_same_state(r_res.best_state_dict, r_full.best_state_dict)
    assert [p.name for p in ckpt.parent.iterdir()] == ["train_state.pth"]  # no temp files left


def test_resume_removes_the_temp_file_of_a_killed_checkpoint_save(tmp_path):
    ckpt = tmp_path / "run" / "train_state.pth"
    trainer(make_module(), epochs=2, checkpoint_path=ckpt).fit(TRAIN, VAL)
    # What a SIGKILL during the next save leaves (atomic_path's temp name), and a neighbour's.
    stale = ckpt.parent / ".train_state.pth.k1ll3d.tmp"
    other = ckpt.parent / ".other_run.pth.busy.tmp"
    stale.write_bytes(b"half a checkpoint")
    other.write_bytes(b"another writer's file")
    res = trainer(make_module(), epochs=3, checkpoint_path=ckpt).fit(TRAIN, VAL)
    assert res.epochs_run == 3  # resumed, not disturbed by the leftover
    assert not stale.exists() and other.read_bytes() == b"another writer's file"


def test_resume_after_preemption_mid_epoch_is_exact(tmp_path):
    straight = make_module()
    r_full = trainer(straight, epochs=5, criterion=MeanMatch()).fit(TRAIN, VAL)

    ckpt = tmp_path / "state.pth"
    # 4 train + 2 val batches per epoch: dies during epoch 4, after the epoch-2 checkpoint.
    with pytest.raises(KeyboardInterrupt):
        trainer(
            epochs=5, checkpoint_path=ckpt, checkpoint_every=2, criterion=MeanMatch(fail_after=20)
        ).fit(TRAIN, VAL)
    assert load_checkpoint(ckpt)["extra"]["trainer_state"]["epoch"] == 2
    resumed = make_module(seed=7)
    r_res = trainer(resumed, epochs=5, checkpoint_path=ckpt, criterion=MeanMatch()).fit(TRAIN, VAL)
    assert r_res.train_loss == r_full.train_loss and r_res.val_loss == r_full.val_loss
    assert_same_state(resumed.state_dict(), straight.state_dict())


def test_resume_refuses_other_settings_or_data(tmp_path):
    ckpt = tmp_path / "state.pth"
    trainer(epochs=1, checkpoint_path=ckpt).fit(TRAIN, VAL)
    with pytest.raises(CheckpointError, match="batch_size"):
        trainer(epochs=2, batch_size=32, checkpoint_path=ckpt).fit(TRAIN, VAL)
    with pytest.raises(CheckpointError, match="data_sha256"):
        trainer(epochs=2, checkpoint_path=ckpt).fit(TRAIN[::-1].copy(), VAL)


def test_sweep_learning_rates_keeps_best_and_matches_single_runs(tmp_path):
    lrs = [1e-2, 1e-4]
    best_lr, results = sweep_learning_rates(
        make_module, lrs, TRAIN, VAL, batch_size=64, epochs=2, device="cpu",
        checkpoint_path=tmp_path / "s.pth",
    )  # fmt: skip
    assert sorted(results) == sorted(lrs)
    assert results[best_lr].best_val_loss == min(r.best_val_loss for r in results.values())
    single = trainer(epochs=2, learning_rate=1e-4).fit(TRAIN, VAL)
    assert results[1e-4].val_loss == single.val_loss
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.lr0.0001.pth", "s.lr0.01.pth"]


def test_recurrent_identity_is_added_once_at_a_fresh_start(tmp_path):
    shifted = make_module()
    with torch.no_grad():
        shifted.rnn.weight_hh_l0.add_(0.8 * torch.eye(H))
    ref = trainer(shifted, criterion=MeanMatch()).fit(TRAIN, VAL)
    m = make_module()
    res = trainer(m, criterion=MeanMatch(), recurrent_identity=0.8).fit(TRAIN, VAL)
    assert res.train_loss == ref.train_loss
    assert_same_state(m.state_dict(), shifted.state_dict())
    # A resumed run takes W_hh from the checkpoint and must not add the identity again.
    ckpt = tmp_path / "state.pth"
    kw = {"criterion": MeanMatch(), "recurrent_identity": 0.8, "checkpoint_path": ckpt}
    trainer(make_module(), epochs=2, **kw).fit(TRAIN, VAL)
    resumed = make_module()
    trainer(resumed, **kw).fit(TRAIN, VAL)
    assert_same_state(resumed.state_dict(), m.state_dict())


def test_cosine_schedule_values_and_training():
    tr = trainer(learning_rate=0.1, lr_schedule="cosine", lr_min=0.02)
    assert tr.learning_rate_at(0, 5) == pytest.approx(0.1)
    assert tr.learning_rate_at(2, 5) == pytest.approx(0.06)  # halfway: the mean
    assert tr.learning_rate_at(4, 5) == pytest.approx(0.02)
    assert trainer(learning_rate=0.1).learning_rate_at(4, 5) == 0.1
    # lr_min == learning_rate is the constant schedule, bit for bit.
    a, b = make_module(), make_module()
    ra = trainer(a, lr_schedule="cosine", lr_min=1e-2).fit(TRAIN, VAL)
    rb = trainer(b).fit(TRAIN, VAL)
    assert ra.train_loss == rb.train_loss
    assert_same_state(a.state_dict(), b.state_dict())
    c = make_module()
    rc = trainer(c, lr_schedule="cosine", lr_min=0.0).fit(TRAIN, VAL)
    assert rc.train_loss[0] == ra.train_loss[0]  # the first step uses the full rate
    assert rc.train_loss[1:] != ra.train_loss[1:]


def test_cosine_schedule_resumes_exactly_and_fixes_epochs(tmp_path):
    kw = {"lr_schedule": "cosine", "lr_min": 1e-4, "criterion": MeanMatch()}
    straight = make_module()
    r_full = trainer(straight, epochs=4, **kw).fit(TRAIN, VAL)
    ckpt = tmp_path / "state.pth"
    with pytest.raises(KeyboardInterrupt):
        trainer(
            epochs=4, checkpoint_path=ckpt, checkpoint_every=2,
            **{**kw, "criterion": MeanMatch(fail_after=15)},
        ).fit(TRAIN, VAL)  # fmt: skip
    resumed = make_module(seed=5)
    r_res = trainer(resumed, epochs=4, checkpoint_path=ckpt, **kw).fit(TRAIN, VAL)
    assert r_res.train_loss == r_full.train_loss
    assert_same_state(resumed.state_dict(), straight.state_dict())
    with pytest.raises(CheckpointError, match="epochs"):
        trainer(epochs=6, checkpoint_path=ckpt, **kw).fit(TRAIN, VAL)


def test_validation_uses_the_same_noise_every_epoch():
    m = make_module()
    tr = trainer(m, epochs=2)
    res = tr.fit(TRAIN, VAL)
    # The module holds the last epoch's weights: re-evaluating them with the validation
    # stream from its start reproduces the last validation loss exactly.
    again = tr.evaluate(torch.from_numpy(VAL), torch_generator(tr._val_seed))
    assert again == res.val_loss[-1]


def test_max_val_seq_evaluates_a_prefix_of_the_validation_set():
    full = trainer(criterion=MeanMatch()).fit(TRAIN, VAL)
    same = trainer(criterion=MeanMatch(), max_val_seq=len(VAL)).fit(TRAIN, VAL)
    assert same.val_loss == full.val_loss
    part = trainer(criterion=MeanMatch(), max_val_seq=64).fit(TRAIN, VAL)
    prefix = trainer(criterion=MeanMatch()).fit(TRAIN, VAL[:64])
    assert part.val_loss == prefix.val_loss and part.val_loss != full.val_loss


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"batch_size": 0}, "batch_size"),
        ({"epochs": -1}, "epochs"),
        ({"learning_rate": -1e-3}, "learning_rate"),
        ({"tau": 0}, "tau"),
        ({"grad_clip": 0}, "grad_clip"),
        ({"loss": "wasserstein"}, "loss"),
        ({"p": 3}, "p must be"),
        ({"blur": 0}, "blur"),
        ({"scaling": 1.5}, "scaling"),
        ({"betas": (1.0, 0.9)}, "betas"),
        ({"weight_decay": -1}, "weight_decay"),
        ({"backend": "gpu"}, "backend"),
        ({"checkpoint_every": 0}, "checkpoint_every"),
        ({"early_stopping_patience": 0}, "early_stopping_patience"),
        ({"device": 3.5}, "device"),
        ({"criterion": "mse"}, "criterion"),
        ({"recurrent_identity": -0.1}, "recurrent_identity"),
        ({"lr_schedule": "step"}, "lr_schedule"),
        ({"lr_min": 1.0}, "lr_min"),
        ({"max_val_seq": 0}, "max_val_seq"),
    ],
)
def test_bad_trainer_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        trainer(**kwargs)


def test_bad_data_and_module():
    with pytest.raises(ValueError, match="NoiseRNN"):
        Trainer(torch.nn.Linear(2, 2))
    tr = trainer()
    with pytest.raises(ValueError, match="symbols"):
        tr.fit(TRAIN[..., :2], VAL[..., :2])
    with pytest.raises(ValueError, match="same length"):
        tr.fit(TRAIN, VAL[:, :3])
    with pytest.raises(ValueError, match="num_seq, seq_len, outputs"):
        tr.fit(TRAIN[0], VAL)
    bad = TRAIN.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        tr.fit(bad, VAL)
    with pytest.raises(ValueError, match="duplicates"):
        sweep_learning_rates(make_module, [1e-3, 1e-3], TRAIN, VAL)


def test_keep_weights_last_returns_the_final_epoch():
    def fit(keep):
        m = make_module(seed=3)
        # Later calls look worse, so the lowest validation loss is not the last one.
        loss = MeanMatch(offset_per_call=0.01)
        return m, trainer(m, criterion=loss, epochs=4, keep_weights=keep).fit(TRAIN, VAL)

    m_last, last = fit("last")
    assert last.best_epoch == 3 and last.best_val_loss == last.val_loss[-1]
    assert all(torch.equal(last.best_state_dict[k], v) for k, v in m_last.state_dict().items())
    _, best = fit("best")
    assert best.val_loss == last.val_loss  # the choice does not change the training itself
    assert best.best_epoch < 3 and best.best_val_loss == min(best.val_loss)
    with pytest.raises(ValueError, match="keep_weights must be one of .*'final'"):
        trainer(keep_weights="final")


class ListedScores:
    """A selection score returning the given values in turn; records what it was shown."""

    def __init__(self, values):
        self.values, self.seen = list(values), []

    def __call__(self, obs):
        self.seen.append(obs)
        return self.values[len(self.seen) - 1]


def test_keep_weights_score_keeps_the_lowest_scoring_of_the_last_epochs():
    score = ListedScores([0.5, 0.1, 0.3])
    m = make_module(seed=3)
    res = trainer(m, epochs=5, keep_weights="score", select_score=score, select_epochs=3,
                  select_seq=16).fit(TRAIN, VAL)  # fmt: skip
    # Epochs 3, 4, 5 (0-based 2, 3, 4) were scored; the second scored lowest.
    assert res.select_scores == {2: 0.5, 3: 0.1, 4: 0.3}
    assert res.best_epoch == 3 and res.best_val_loss == res.val_loss[3]
    assert [o.shape for o in score.seen] == [(16, T)] * 3
    assert all(o.dtype == np.int64 and o.min() >= 0 and o.max() < OUT for o in score.seen)
    # Scoring does not change the training: the same losses and final weights as "last".
    m_last = make_module(seed=3)
    last = trainer(m_last, epochs=5, keep_weights="last").fit(TRAIN, VAL)
    assert (res.train_loss, res.val_loss) == (last.train_loss, last.val_loss)
    assert_same_state(m.state_dict(), m_last.state_dict())
    # The kept weights are those at the end of epoch 4 (constant step size: a 4-epoch run).
    m4 = make_module(seed=3)
    trainer(m4, epochs=4).fit(TRAIN, VAL)
    assert_same_state(res.best_state_dict, m4.state_dict())


def test_keep_weights_score_sees_the_same_noise_every_epoch():
    score = ListedScores([1.0] * 2)
    # A zero step size leaves the weights alone, so both epochs generate identical sequences.
    m = make_module(seed=5)
    trainer(m, epochs=2, learning_rate=1e-12, keep_weights="score", select_score=score,
            select_epochs=2, select_seq=32).fit(TRAIN, VAL)  # fmt: skip
    np.testing.assert_array_equal(score.seen[0], score.seen[1])
    assert len(np.unique(score.seen[0])) > 1  # real samples, not a constant


def test_keep_weights_score_settings_are_checked():
    with pytest.raises(ValueError, match="keep_weights='score' needs select_score"):
        trainer(keep_weights="score")
    with pytest.raises(ValueError, match="select_score needs keep_weights='score'.*'last'"):
        trainer(keep_weights="last", select_score=lambda obs: 0.0)
    with pytest.raises(ValueError, match="early_stopping_patience=3"):
        trainer(keep_weights="score", select_score=lambda obs: 0.0, early_stopping_patience=3)
    with pytest.raises(ValueError, match="select_epochs"):
        trainer(keep_weights="score", select_score=lambda obs: 0.0, select_epochs=0)
    with pytest.raises(ValueError, match=r"select_seq is only used with keep_weights='score' "
                       r"\(got select_seq=100, keep_weights='best'\)"):  # fmt: skip
        trainer(select_seq=100)
    with pytest.raises(ValueError, match="select_epochs is only used"):
        trainer(keep_weights="last", select_epochs=3)
    with pytest.raises(ValueError, match="select_score must be callable"):
        trainer(keep_weights="score", select_score=0.5)
    bad = trainer(epochs=1, keep_weights="score", select_score=lambda obs: float("nan"))
    with pytest.raises(FloatingPointError, match="select_score returned nan at epoch 1"):
        bad.fit(TRAIN, VAL)


def symbol_zero_score(obs):
    """Deterministic in the sequences: how far the frequency of symbol 0 is from 0.3."""
    return abs(float((obs == 0).mean()) - 0.3)


def test_keep_weights_score_resumes_exactly(tmp_path):
    kw = {"epochs": 5, "keep_weights": "score", "select_score": symbol_zero_score,
          "select_epochs": 3, "select_seq": 64}  # fmt: skip
    straight = trainer(make_module(), criterion=MeanMatch(), **kw).fit(TRAIN, VAL)
    ckpt = tmp_path / "state.pth"
    # 4 train + 2 val batches per epoch: dies during epoch 4, after epoch 3 (one scored).
    with pytest.raises(KeyboardInterrupt):
        trainer(checkpoint_path=ckpt, checkpoint_every=1, criterion=MeanMatch(fail_after=20),
                **kw).fit(TRAIN, VAL)  # fmt: skip
    assert list(load_checkpoint(ckpt)["extra"]["trainer_state"]["select_scores"]) == [2]
    resumed = trainer(make_module(seed=9), checkpoint_path=ckpt, criterion=MeanMatch(), **kw).fit(
        TRAIN, VAL
    )
    assert resumed.select_scores == straight.select_scores and len(straight.select_scores) == 3
    assert resumed.best_epoch == straight.best_epoch
    assert_same_state(resumed.best_state_dict, straight.best_state_dict)
    with pytest.raises(CheckpointError, match="select_seq"):
        trainer(checkpoint_path=ckpt, criterion=MeanMatch(), **{**kw, "select_seq": 32}).fit(
            TRAIN, VAL
        )


def test_keep_weights_average_keeps_the_mean_of_the_last_epochs():
    m = make_module(seed=3)
    res = trainer(m, epochs=5, keep_weights="average", average_epochs=3).fit(TRAIN, VAL)
    # Constant step size: the weights after epoch k are those of a k-epoch run.
    ends = []
    for k in (3, 4, 5):
        mk = make_module(seed=3)
        trainer(mk, epochs=k).fit(TRAIN, VAL)
        ends.append(mk.state_dict())
    for name, kept in res.best_state_dict.items():
        mean = sum(e[name].double() for e in ends) / 3
        assert torch.equal(kept, mean.float()), name
        assert not torch.equal(kept, ends[-1][name])  # really an average, not the last epoch
    assert res.best_epoch == 4
    assert_same_state(m.state_dict(), ends[-1])  # the module keeps the last epoch's weights
    # The reported loss is that of the mean weights, under the validation noise of fit().
    probe = trainer(make_module(seed=3))
    probe.module.load_state_dict(res.best_state_dict)
    expected = probe.evaluate(torch.from_numpy(VAL), torch_generator(probe._val_seed))
    assert res.best_val_loss == pytest.approx(expected, rel=1e-6)
    assert res.best_val_loss != res.val_loss[-1]
    # Averaging does not change the training itself.
    last = trainer(make_module(seed=3), epochs=5, keep_weights="last").fit(TRAIN, VAL)
    assert (res.train_loss, res.val_loss) == (last.train_loss, last.val_loss)


def test_keep_weights_average_settings_are_checked():
    with pytest.raises(ValueError, match=r"average_epochs is only used with keep_weights="
                       r"'average' \(got average_epochs=4, keep_weights='last'\)"):  # fmt: skip
        trainer(keep_weights="last", average_epochs=4)
    with pytest.raises(ValueError, match=r"average_epochs must be at most epochs = 3 \(got 4\)"):
        trainer(keep_weights="average", average_epochs=4)
    with pytest.raises(ValueError, match="average_epochs must be a positive integer"):
        trainer(keep_weights="average", average_epochs=0)
    with pytest.raises(ValueError, match="keep_weights='average'.*early_stopping_patience=2"):
        trainer(keep_weights="average", early_stopping_patience=2)
    assert trainer(keep_weights="average", epochs=12).average_epochs == 10  # the default
    with pytest.raises(ValueError, match=r"at most epochs = 3 \(got 10\)"):
        trainer(keep_weights="average")


def test_keep_weights_average_resumes_exactly(tmp_path):
    kw = {"epochs": 5, "keep_weights": "average", "average_epochs": 3}
    straight = trainer(make_module(), criterion=MeanMatch(), **kw).fit(TRAIN, VAL)
    ckpt = tmp_path / "state.pth"
    # 4 train + 2 val batches per epoch: dies during epoch 4, after epoch 3 (one averaged).
    with pytest.raises(KeyboardInterrupt):
        trainer(checkpoint_path=ckpt, checkpoint_every=1, criterion=MeanMatch(fail_after=20),
                **kw).fit(TRAIN, VAL)  # fmt: skip
    assert load_checkpoint(ckpt)["extra"]["trainer_state"]["average_count"] == 1
    resumed = trainer(make_module(seed=9), checkpoint_path=ckpt, criterion=MeanMatch(), **kw).fit(
        TRAIN, VAL
    )
    assert_same_state(resumed.best_state_dict, straight.best_state_dict)
    assert resumed.best_val_loss == straight.best_val_loss
    # Another window is refused: another average_epochs, or more epochs (constant step size).
    with pytest.raises(CheckpointError, match="average_epochs: checkpoint 3 vs now 4"):
        trainer(checkpoint_path=ckpt, criterion=MeanMatch(), **{**kw, "average_epochs": 4}).fit(
            TRAIN, VAL
        )
    with pytest.raises(CheckpointError, match="sum of 3 epochs' weights.*needs 2 after epoch 5"):
        trainer(checkpoint_path=ckpt, criterion=MeanMatch(), **{**kw, "epochs": 6}).fit(TRAIN, VAL)


def test_activity_penalty_acts_only_above_the_limit():
    target = torch.from_numpy(TRAIN[:32])

    def loss(**kw):
        t = trainer(make_module(seed=4), criterion=MeanMatch(), **kw)
        return t._batch_loss(t.make_criterion(), target, torch_generator(0, "cpu"))

    plain = loss()
    # Initial states ~ N(0, I) in 16 units have norm ~4: far below a limit of 1000.
    assert torch.equal(loss(activity_penalty=5.0, activity_limit=1000.0), plain)
    # With limit 1 every state is penalised: the loss grows by exactly the hand-computed term.
    m = make_module(seed=4)
    g = torch_generator(0, "cpu")
    x = torch.randn((32, T, IN), generator=g)
    _, hidden, _ = m(x, generator=g)
    expected = plain + 0.5 * torch.relu(hidden.norm(dim=-1) - 1.0).square().mean()
    torch.testing.assert_close(loss(activity_penalty=0.5, activity_limit=1.0), expected)


def test_activity_penalty_shrinks_activity():
    def mean_norm(**kw):
        m = make_module(seed=5)
        trainer(m, criterion=MeanMatch(), epochs=5, learning_rate=3e-2, **kw).fit(TRAIN, VAL)
        x = torch.randn((256, T, IN), generator=torch_generator(1, "cpu"))
        with torch.no_grad():
            return m(x, generator=torch_generator(2, "cpu"))[1].norm(dim=-1).mean().item()

    assert mean_norm(activity_penalty=1.0, activity_limit=0.5) < 0.8 * mean_norm()


@pytest.mark.parametrize(
    ("kw", "name"),
    [({"activity_penalty": -1.0}, "activity_penalty"), ({"activity_limit": 0.0}, "activity_limit")],
)
def test_activity_settings_are_checked(kw, name):
    with pytest.raises(ValueError, match=name):
        trainer(**kw)


def test_halves_estimator_trains_reproducibly_and_lowers_the_loss():
    def fit():
        m = make_module(seed=6)
        t = trainer(m, estimator="halves", epochs=15, blur=0.5, seed=2, learning_rate=3e-2)
        return t.config(), t.fit(TRAIN, VAL), m.state_dict()

    config, result, weights = fit()
    assert config["estimator"] == "halves"
    # From about 0.5 to noise around 0 (the estimate is zero in expectation at a match).
    assert np.mean(result.train_loss[-3:]) < 0.25 * result.train_loss[0]
    _, again, weights_again = fit()
    assert again.train_loss == result.train_loss
    assert_same_state(weights, weights_again)


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"estimator": "halves", "criterion": MeanMatch()}, "not to criterion"),
        ({"estimator": "halves", "debias": False}, "debias=True"),
        ({"estimator": "paired"}, "estimator must be one of"),
    ],
)
def test_estimator_settings_are_checked(kw, message):
    with pytest.raises(ValueError, match=message):
        trainer(**kw)


def test_halves_rejects_a_minibatch_of_one_before_training():
    m = make_module(seed=7)
    before = {k: v.clone() for k, v in m.state_dict().items()}
    # 256 training sequences in batches of 85: the last batch holds one sequence.
    with pytest.raises(ValueError, match="256 train sequences in batches of 85 leave one alone"):
        trainer(m, estimator="halves", batch_size=85).fit(TRAIN, VAL)
    assert_same_state(m.state_dict(), before)


def _kgram_distance(module, data, seed):
    """Chi-square k-gram distance (k <= 3) of 2 x 512 samples from the module to ``data``."""
    from hmmrnn.loss import KGramPenalty

    obs = generate(module, 1024, T, generator=torch_generator(seed, "cpu")).observations
    samples = torch.eye(OUT)[torch.from_numpy(obs).long()]
    return KGramPenalty(torch.from_numpy(data), max_k=3)(samples).item()


def test_kgram_penalty_is_added_to_the_loss_and_brings_kgrams_closer():
    target = torch.from_numpy(TRAIN[:32])

    def loss(**kw):
        t = trainer(make_module(seed=4), criterion=MeanMatch(), **kw)
        t._kgram = None
        if kw.get("kgram_penalty"):
            from hmmrnn.loss import KGramPenalty

            t._kgram = KGramPenalty(torch.from_numpy(TRAIN), max_k=2, weight=3.0)
        return t._batch_loss(t.make_criterion(), target, torch_generator(0, "cpu"))

    m = make_module(seed=4)
    g = torch_generator(0, "cpu")
    out, _, _ = m(torch.randn((32, T, IN), generator=g), generator=g)
    from hmmrnn.loss import KGramPenalty

    expected = loss() + KGramPenalty(torch.from_numpy(TRAIN), max_k=2, weight=3.0)(out)
    torch.testing.assert_close(loss(kgram_penalty=3.0, kgram_max_k=2), expected)

    def fit(**kw):
        m = make_module(seed=7)
        t = trainer(m, criterion=MeanMatch(), epochs=6, learning_rate=3e-2, **kw)
        t.fit(TRAIN, VAL)
        return t, m

    t, with_penalty = fit(kgram_penalty=1.0, kgram_max_k=3)
    assert t.config()["kgram_penalty"] == 1.0 and t.config()["kgram_max_k"] == 3
    _, without = fit()
    assert _kgram_distance(with_penalty, TRAIN, 3) < 0.5 * _kgram_distance(without, TRAIN, 3)


def test_kgram_settings_are_checked(monkeypatch):
    with pytest.raises(ValueError, match="kgram_penalty"):
        trainer(kgram_penalty=-0.5)
    with pytest.raises(ValueError, match="kgram_max_k"):
        trainer(kgram_max_k=0)
    with pytest.raises(ValueError, match=rf"kgram_max_k must be at most the sequence length {T}"):
        trainer(kgram_penalty=1.0, kgram_max_k=T + 1).fit(TRAIN, VAL)
    with pytest.raises(ValueError, match="kgram_penalty needs at least 2 sequences"):
        trainer(kgram_penalty=1.0, batch_size=255).fit(TRAIN, VAL)
    with pytest.raises(ValueError, match=r"kgram_switch_lags must be an integer >= 0 \(got -1\)"):
        trainer(kgram_penalty=1.0, kgram_switch_lags=-1)
    with pytest.raises(ValueError, match=r"kgram_switch_lags = 2 needs kgram_penalty > 0"):
        trainer(kgram_switch_lags=2)
    with pytest.raises(ValueError, match=rf"at most the sequence length minus 2 \({T - 2}\)"):
        trainer(kgram_penalty=1.0, kgram_switch_lags=T - 1).fit(TRAIN, VAL)
    with pytest.raises(ValueError, match=r"kgram_expected must be True or False \(got 1\)"):
        trainer(kgram_penalty=1.0, kgram_expected=1)
    with pytest.raises(ValueError, match=r"kgram_expected = True needs kgram_penalty > 0"):
        trainer(kgram_expected=True)
    m = make_module(seed=7)
    before = {k: v.clone() for k, v in m.state_dict().items()}
    monkeypatch.setattr("hmmrnn.training.MAX_EXPECTED_KGRAM_VALUES", 64 * OUT**T - 1)
    huge = trainer(m, kgram_penalty=1.0, kgram_expected=True, kgram_max_k=T)
    with pytest.raises(ValueError, match=rf"outputs \*\* kgram_max_k = {64 * OUT**T} values"):
        huge.fit(TRAIN, VAL)
    assert_same_state(m.state_dict(), before)


def _switch_pair_distance(module, data, lags, seed):
    from hmmrnn.loss import switch_pair_rates

    obs = generate(module, 1024, T, generator=torch_generator(seed, "cpu")).observations
    samples = torch.eye(OUT)[torch.from_numpy(obs).long()]
    q = switch_pair_rates(torch.from_numpy(data), lags).mean(0)
    return float(((switch_pair_rates(samples, lags).mean(0) - q) ** 2 / (q + 1e-3)).sum())


def test_kgram_switch_lags_reach_the_penalty_and_bring_switch_pairs_closer():
    def fit(**kw):
        m = make_module(seed=7)
        t = trainer(m, criterion=MeanMatch(), epochs=6, learning_rate=3e-2, **kw)
        t.fit(TRAIN, VAL)
        return t, m

    t, with_lags = fit(kgram_penalty=1.0, kgram_max_k=1, kgram_switch_lags=3)
    assert t._kgram.switch_lags == 3 and t.config()["kgram_switch_lags"] == 3
    _, without = fit(kgram_penalty=1.0, kgram_max_k=1)
    got = _switch_pair_distance(with_lags, TRAIN, 3, 3)
    assert got < 0.5 * _switch_pair_distance(without, TRAIN, 3, 3)


def test_kgram_expected_uses_the_output_probabilities_and_brings_kgrams_closer():
    from hmmrnn.loss import KGramPenalty

    target = torch.from_numpy(TRAIN[:32])
    t = trainer(make_module(seed=4), criterion=MeanMatch(), kgram_penalty=3.0, kgram_expected=True)
    t._kgram = KGramPenalty(torch.from_numpy(TRAIN), max_k=2, weight=3.0)
    got = t._batch_loss(t.make_criterion(), target, torch_generator(0, "cpu"))
    m = make_module(seed=4)
    g = torch_generator(0, "cpu")
    out, _, logits = m(torch.randn((32, T, IN), generator=g), generator=g)
    base = MeanMatch()(out.reshape(32, -1), target.reshape(32, -1))
    expected = base + t._kgram(torch.softmax(logits, -1), probabilities=True)
    torch.testing.assert_close(got, expected)
    assert t.config()["kgram_expected"] is True

    def fit(**kw):
        m = make_module(seed=7)
        trainer(m, criterion=MeanMatch(), epochs=6, learning_rate=3e-2, **kw).fit(TRAIN, VAL)
        return m

    with_penalty = fit(kgram_penalty=1.0, kgram_max_k=3, kgram_expected=True)
    without = fit()
    assert _kgram_distance(with_penalty, TRAIN, 3) < 0.5 * _kgram_distance(without, TRAIN, 3)
