"""backbone_compile: cuda_graph (recbole_sprint/model/graphs.py), on the CPU.

There is no CUDA here, so ``torch.cuda.make_graphed_callables`` is replaced by :func:`replaying_recorder`, a stand-in
with the semantics of a CUDA graph that matter to the code around it: the recording runs the module's forward and
backward once, under a guard that fails on any host synchronisation (what a CUDA recording cannot contain); every
later call copies its inputs into the recording's own input tensors, returns the same output tensors each time
(overwritten by the next call, as a replay overwrites its outputs), and returns the parameters' gradients in the same
tensors each time; Python that ran inside the recorded forward (hooks, bookkeeping) is not run again for the
caller's benefit. The recorded graphs themselves against eager training, on a GPU: ``python
benchmarks/sprint_overhead.py --device cuda --check_graphs`` (its backbone rows).
"""

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import recbole_sprint.model.graphs as graphs
from recbole_sprint.config import Config
from recbole_sprint.model.sequential_recommender.sasrecpp import SASRecPP
from recbole_sprint.model.sequential_recommender.sasrecppsprint import SASRecPPSPRINT
from recbole_sprint.model.sequential_recommender.sasrecsprint import SASRecSPRINT

from .test_sasrecpp import StubDataset

N_ITEMS = 30

HOST_READS = {"aten._local_scalar_dense.default", "aten.nonzero.default", "aten.masked_select.default",
              "aten.item.default"}


class NoHostSync(TorchDispatchMode):
    """Fails on an operator that reads a device value on the host (``.item()``, boolean indexing, ``nonzero``)."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = str(func)
        bool_index = name.startswith("aten.index") and any(
            torch.is_tensor(i) and i.dtype == torch.bool for i in (args[1] if len(args) > 1 and
                                                                      isinstance(args[1], (list, tuple)) else []))
        if name in HOST_READS or bool_index:
            raise AssertionError(f"{name} inside the recorded backbone: a CUDA graph cannot record a host read")
        return func(*args, **(kwargs or {}))


def replaying_recorder(recordings):
    """A stand-in for ``torch.cuda.make_graphed_callables(module, sample_args, allow_unused_input=...)`` (see the
    module docstring). Appends ``(module, sample_args)`` to ``recordings``."""

    def make_graphed_callables(module, sample_args, allow_unused_input=False):
        recordings.append((module, sample_args))
        params = tuple(module.parameters())
        static_inputs = tuple(sample_args)  # as torch: the sample arguments are the replay's input tensors
        surface = [arg for arg in static_inputs if arg.requires_grad] + list(params)  # what gets gradients
        original = module.forward
        with torch.random.fork_rng(), NoHostSync():  # the recording (its random draws do not count)
            outputs = original(*static_inputs)
            wanted = [output for output in outputs if output.requires_grad]
            grads = torch.autograd.grad(wanted, surface, [torch.ones_like(o) for o in wanted],
                                        allow_unused=allow_unused_input)
        static_outputs = tuple(output.detach().clone() for output in outputs)
        static_grads = tuple(None if grad is None else torch.empty_like(grad) for grad in grads)
        live = {}

        class Replay(torch.autograd.Function):
            @staticmethod
            def forward(ctx, *args):
                for static, arg in zip(static_inputs, args[: len(static_inputs)]):
                    if static.data_ptr() != arg.data_ptr():  # as torch: an input on the recording's own memory
                        static.copy_(arg)
                with torch.enable_grad():
                    live["surface"] = [s.detach().requires_grad_() if s.requires_grad else s for s in static_inputs]
                    live["outputs"] = original(*live["surface"])
                for static, output in zip(static_outputs, live["outputs"]):
                    static.copy_(output.detach())
                return tuple(static.detach() for static in static_outputs)  # the same tensors every call

            @staticmethod
            def backward(ctx, *grad_outputs):
                pairs = [(o, g) for o, g in zip(live.pop("outputs"), grad_outputs) if o.requires_grad]
                leaves = [s for s in live.pop("surface") if s.requires_grad] + list(params)
                got = torch.autograd.grad([o for o, _ in pairs], leaves, [g for _, g in pairs], allow_unused=True)
                for static, grad in zip(static_grads, got):
                    if static is not None:
                        static.copy_(grad if grad is not None else torch.zeros_like(static))
                grads, position = [], 0  # one per input (None where it needs none), then the parameters'
                for arg in static_inputs:
                    grads.append(static_grads[position] if arg.requires_grad else None)
                    position += arg.requires_grad
                return (*grads, *static_grads[position:])

        training = module.training

        def replayed(*args):
            if module.training != training:
                return original(*args)
            return Replay.apply(*args, *params)

        module.forward = replayed
        return module

    return make_graphed_callables


def build(tiny, model_class, **overrides):
    settings = dict(train_mode="full_sequence", n_layers=2, hidden_size=8, inner_size=16, n_heads=2,
                    MAX_ITEM_LIST_LENGTH=6)
    settings.update(overrides)
    config = Config(model=model_class.__name__, dataset="ml-100k", config_dict=tiny(**settings))
    torch.manual_seed(0)
    return model_class(config, StubDataset(N_ITEMS))


def batches(sizes=(4, 4, 3, 4), n=6):
    """Right-padded full_sequence rows (item_id_list, item_length, item_id_target_list): two full batches, the
    last smaller one of an epoch, then a full one again."""
    from recbole.data.interaction import Interaction

    generator = torch.Generator().manual_seed(3)
    out = []
    for size in sizes:
        lengths = torch.randint(1, n + 1, (size,), generator=generator)
        lengths[0] = n
        items = torch.randperm(N_ITEMS - 1, generator=generator)[: size * (n + 1)].view(size, n + 1) + 1
        valid = torch.arange(n + 1)[None, :] < (lengths + 1)[:, None]
        items = items * valid
        out.append(Interaction({"item_id_list": items[:, :n] * (torch.arange(n)[None, :] < lengths[:, None]),
                                "item_length": lengths,
                                "item_id_target_list": items[:, 1:] * (torch.arange(n)[None, :] < lengths[:, None])}))
    return out


def train(model, steps):
    """Adam steps on ``steps``; returns the losses and the parameters after each step."""
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    model.train()
    torch.manual_seed(11)
    losses, weights = [], []
    for interaction in steps:
        optimizer.zero_grad()
        loss = model.calculate_loss(interaction)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        weights.append([p.detach().clone() for p in model.parameters()])
    return losses, weights


@pytest.fixture
def recorded(monkeypatch):
    """Make ``backbone_compile: cuda_graph`` and ``sprint_compile: cuda_graph`` record through
    :func:`replaying_recorder` on the CPU."""
    import recbole_sprint.model.sprint as sprint_module

    recordings = []
    for module in (graphs, sprint_module):
        monkeypatch.setattr(module, "cuda_graphs_usable", lambda tensor: True)
        monkeypatch.setattr(module, "warm_capture_stream", lambda module, sample: None)
    monkeypatch.setattr(torch.cuda, "make_graphed_callables", replaying_recorder(recordings))
    return recordings


CASES = {
    "SASRec++-SPRINT dense BCE": (SASRecPPSPRINT, dict(loss_type="BCE", num_negatives=3)),
    "SASRec++-SPRINT fused CE": (SASRecPPSPRINT, dict(attention_impl="fused", loss_type="CE")),
    "SASRec++-SPRINT every 2": (SASRecPPSPRINT, dict(sprint_every=2, loss_type="BCE", num_negatives=3)),
    "SASRec++-SPRINT w0": (SASRecPPSPRINT, dict(sprint_attn_weight=0.0, sprint_ffn_weight=0.0, sprint_emb_weight=0.0)),
    "SASRec++-SPRINT FFN only": (SASRecPPSPRINT, dict(sprint_attn_weight=0.0)),
    "SASRec++": (SASRecPP, dict(attention_impl="fused", loss_type="BCE", num_negatives=3)),
    "SASRec++-SPRINT, SPRINT's terms in the backbone's graphs": (SASRecPPSPRINT, dict(sprint_compile="cuda_graph")),
    "SASRec++-SPRINT every 2, terms in the backbone's graphs": (SASRecPPSPRINT, dict(
        sprint_every=2, sprint_compile="cuda_graph", loss_type="BCE", num_negatives=3)),
    "SASRec++-SPRINT fused, FFN only, terms in the backbone's graphs": (SASRecPPSPRINT, dict(
        attention_impl="fused", sprint_attn_weight=0.0, sprint_compile="cuda_graph")),
    "SASRec++-SPRINT, SPRINT's terms in graphs of their own": (SASRecPPSPRINT, dict(
        sprint_compile="cuda_graph", sprint_in_backbone_graph=False)),
    "SASRec-SPRINT": (SASRecSPRINT, dict(loss_type="CE")),
    "SASRec++ sampled softmax": (SASRecPP, dict(loss_type="sampled_softmax", num_negatives=3)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_graphed_backbone_trains_as_the_eager_one(tiny, recorded, case):
    """Losses and weights after every step equal eager training (float rounding: the parameters' gradients are
    summed in another order), with a smaller last batch (a second recording), SPRINT's column sums handed over as
    graph outputs or its terms recorded with the backbone, and nothing recorded twice."""
    model_class, overrides = CASES[case]
    steps = batches()
    eager_overrides = {key: value for key, value in overrides.items()
                       if key not in ("sprint_compile", "sprint_in_backbone_graph")}
    eager = train(build(tiny, model_class, **eager_overrides), steps)  # nothing recorded
    model = build(tiny, model_class, backbone_compile="cuda_graph", **overrides)
    graphed = train(model, steps)
    assert graphed[0] == pytest.approx(eager[0], rel=1e-5, abs=1e-6)
    # a key projection's bias has no gradient but rounding (softmax is invariant to a constant added to a row of
    # Q K^T), and Adam scales that noise up to steps of up to lr: those biases (RecBole's SASRec) agree within lr / 10
    names = [name for name, _ in model.named_parameters()]
    for after_graphed, after_eager in zip(graphed[1], eager[1]):
        for name, a, b in zip(names, after_graphed, after_eager):
            assert torch.allclose(a, b, atol=1e-3 if name.endswith("attention.key.bias") else 1e-5), name
    assert all(not torch.equal(a, b) for a, b in zip(eager[1][-1][:1], eager[1][0][:1]))  # the weights moved
    # one recording per batch size (4, 3); with sprint_every 2 also per kind of step: (4, with column sums or terms),
    # (4, without), (3, with), then (4, with) again; SPRINT's terms in graphs of their own: theirs too, one per batch
    # size; in the backbone's graphs (the default with sprint_compile: cuda_graph): none of their own, the start
    # vectors of the power iterations are inputs of the backbone's
    backbone = [(module, sample) for module, sample in recorded if isinstance(module, graphs.RecordedBackbone)]
    assert len(backbone) == (3 if "sprint_every" in overrides else 2)
    own = overrides.get("sprint_compile") == "cuda_graph" and overrides.get("sprint_in_backbone_graph") is False
    assert len(recorded) - len(backbone) == (2 if own else 0)
    with_terms = overrides.get("sprint_compile") == "cuda_graph" and not own
    starts = [tuple(model.sprint.get_buffer(f"{name}.v").shape) for name in model.sprint.estimator_names()
              ] if with_terms else []
    for module, sample in backbone:  # recorded with its loss: the targets are an input too
        assert set(map(id, module.parameters())) == set(map(id, model.parameters()))
        shapes = [[(size, 6), (size,), (size, 6)] + (starts if with_terms else []) for size in (4, 3)]
        if "sprint_every" in overrides and with_terms:  # the lazy step's graph has no terms, no start vectors
            shapes += [[(4, 6), (4,), (4, 6)]]
        assert [tuple(field.shape) for field in sample] in shapes
    assert list(model.state_dict()) == list(build(tiny, model_class, **eager_overrides).state_dict())  # nothing added
    assert not any(isinstance(m, graphs.RecordedBackbone) for m in model.modules())  # not in the model's tree


@pytest.mark.parametrize("loss_type", ["CE", "BCE"])
def test_graphed_sprint_outputs_are_the_column_sums_of_each_layer(tiny, recorded, loss_type):
    """The recording returns the loss (recorded with the backbone), then one ``[B, H, n]`` column-sum tensor per
    layer, and after each replay the regulariser holds those tensors (the hooks
    do not run in a replay)."""
    model = build(tiny, SASRecPPSPRINT, backbone_compile="cuda_graph", loss_type=loss_type, num_negatives=3)
    model.train()
    interaction = batches(sizes=(4,))[0]
    model.calculate_loss(interaction).backward()
    module, sample = recorded[0]
    outputs = module(*sample)
    assert [tuple(o.shape) for o in outputs] == [(), (4, 2, 6), (4, 2, 6)]
    model.sprint._column_sums = [None, None]
    loss = model._backbone_graphs.loss(interaction)
    assert loss.shape == () and loss.requires_grad
    assert [tuple(s.shape) for s in model.sprint._column_sums] == [(4, 2, 6), (4, 2, 6)]
    assert torch.equal(model.sprint._query_weights, (interaction["item_id_list"] != 0).float())


def test_evaluation_and_prefix_scoring_do_not_use_the_graphs(tiny, recorded):
    model = build(tiny, SASRecPPSPRINT, backbone_compile="cuda_graph")
    model.eval()
    interaction = batches(sizes=(4,))[0]
    with torch.no_grad():
        scores = model.full_sort_predict(interaction)
        model.train()
        model.calculate_loss(interaction)  # no gradient: eager
    assert scores.shape == (4, N_ITEMS) and recorded == []


def test_off_cuda_the_backbone_runs_eagerly_with_one_warning(tiny):
    steps = batches()
    eager = train(build(tiny, SASRecPPSPRINT), steps)
    with pytest.warns(RuntimeWarning, match="backbone_compile: cuda_graph records CUDA graphs") as caught:
        graphed = train(build(tiny, SASRecPPSPRINT, backbone_compile="cuda_graph"), steps)
    assert len([w for w in caught if "backbone_compile" in str(w.message)]) == 1
    assert graphed[0] == eager[0]


def test_recordings_run_after_a_collection_with_the_cyclic_collector_off(tiny, monkeypatch):
    """A discarded model's graphs are freed by Python's cyclic collector (model and BackboneGraphs refer to each
    other); freed inside another recording they invalidate it (likely how recordings failed on the GPU after other
    models' in one process). So garbage is collected before each recording, the backbone's and SPRINT's terms' (here
    both: sprint_in_backbone_graph False), and the collector is off while it records, on again after."""
    import gc

    import recbole_sprint.model.sprint as sprint_module

    events = []
    real_collect = gc.collect
    monkeypatch.setattr(gc, "collect", lambda *args: events.append("collect") or real_collect(*args))

    def stand_in(module, sample, **options):
        events.append(("record", type(module).__name__, gc.isenabled()))
        return module

    for module in (graphs, sprint_module):
        monkeypatch.setattr(module, "cuda_graphs_usable", lambda tensor: True)
        monkeypatch.setattr(module, "warm_capture_stream", lambda module, sample: None)
    monkeypatch.setattr(torch.cuda, "make_graphed_callables", stand_in)
    assert gc.isenabled()
    model = build(tiny, SASRecPPSPRINT, backbone_compile="cuda_graph", sprint_compile="cuda_graph",
                  sprint_in_backbone_graph=False)
    model.calculate_loss(batches(sizes=(4,))[0]).backward()
    assert events == ["collect", ("record", "RecordedBackbone", False), "collect", ("record", "GraphedTerms", False)]
    assert gc.isenabled()


def test_the_recorded_backbone_has_no_host_read_the_guard_catches_one(tiny, recorded, monkeypatch):
    """The guard of the stand-in fails on a host read, so the cases above show the backbone has none."""
    model = build(tiny, SASRecPPSPRINT, backbone_compile="cuda_graph")
    original = SASRecPPSPRINT.forward_all_positions

    def reading(self, interaction):
        hidden = original(self, interaction)
        return hidden * (1 + 0 * hidden.sum().item())

    monkeypatch.setattr(SASRecPPSPRINT, "forward_all_positions", reading)
    model.train()
    with pytest.raises(AssertionError, match="_local_scalar_dense"):
        model.calculate_loss(batches(sizes=(4,))[0])


def test_backbone_compile_errors_name_the_option_and_its_values(tiny):
    with pytest.raises(ValueError, match=r"backbone_compile must be one of \['none', 'cuda_graph'\], got 'fast'"):
        build(tiny, SASRecPPSPRINT, backbone_compile="fast")
    with pytest.raises(ValueError, match="needs train_mode: full_sequence, got train_mode 'prefix'"):
        build(tiny, SASRecPPSPRINT, backbone_compile="cuda_graph", train_mode="prefix")
    from recbole_sprint.model.sequential_recommender.hstu import HSTU

    with pytest.raises(ValueError, match="backbone_compile: cuda_graph is not available for HSTU"):
        build(tiny, HSTU, backbone_compile="cuda_graph")
    assert build(tiny, SASRecPPSPRINT).backbone_compile == "none"  # FullSequence.yaml's default
    config = Config(model="SASRecPPSPRINT", dataset="ml-100k", config_dict=tiny(backbone_compile="cuda_graph"))
    config["single_spec"] = False  # what RecBole's config says under --nproc > 1
    with pytest.raises(ValueError, match="backbone_compile: cuda_graph runs in one process"):
        SASRecPPSPRINT(config, StubDataset(N_ITEMS))


def test_through_the_plugin_trainer_an_epoch_equals_the_eager_one(tiny, recorded):
    """SprintTrainer's loop (one epoch of 449 users in batches of 64: 7 full batches and a smaller last one, BCE
    recorded with the backbone, device loss sums, gradient clipping, AdamW with the linear schedule) with the
    backbone's graphs equals the eager epoch, and records twice (two batch shapes)."""
    from recbole.utils import init_seed

    from recbole_sprint.data import create_dataset, data_preparation
    from recbole_sprint.trainer import SprintTrainer

    from .recbole_runs import SMALL_ML100K

    results = {}
    for mode in ("none", "cuda_graph"):
        config = Config(model="SASRecPPSPRINT", dataset="ml-100k", config_dict=tiny(
            train_mode="full_sequence", train_batch_size=64, backbone_compile=mode, learner="adamw", loss_type="BCE",
            lr_scheduler="linear", lr_warmup_ratio=0.1, clip_grad_norm={"max_norm": 1.0}, **SMALL_ML100K))
        init_seed(config["seed"], True)
        train, _, _ = data_preparation(config, create_dataset(config))
        init_seed(config["seed"], True)
        model = SASRecPPSPRINT(config, train._dataset)
        trainer = SprintTrainer(config, model)
        loss = trainer._train_epoch(train, 0)
        results[mode] = (loss, trainer.sprint_parts, [p.detach().clone() for p in model.parameters()])
    assert len(train) == 8 and len(recorded) == 2
    (eager_loss, eager_parts, eager_weights), (loss, parts, weights) = results["none"], results["cuda_graph"]
    assert loss == pytest.approx(eager_loss, rel=1e-5) and parts == pytest.approx(eager_parts, rel=1e-4)
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(weights, eager_weights))


def test_inductor_terms_in_the_backbone_s_graphs_train_as_eager(tiny, monkeypatch):
    """sprint_compile: inductor_cuda_graph with the backbone's graphs records SPRINT's terms compiled by
    torch.compile inside the backbone's recording (aot_eager here: tracing without code generation; a recorder that
    hands the module back, as torch.compile does not run under the replaying stand-in's dispatch mode); Inductor's
    kernels in CUDA graphs on the GPU: benchmarks/sprint_overhead.py --check_graphs."""
    import recbole_sprint.model.sprint as sprint_module

    recordings = []
    for module in (graphs, sprint_module):
        monkeypatch.setattr(module, "cuda_graphs_usable", lambda tensor: True)
        monkeypatch.setattr(module, "warm_capture_stream", lambda module, sample: None)
    monkeypatch.setattr(torch.cuda, "make_graphed_callables",
                        lambda module, sample, **options: recordings.append(sample) or module)
    monkeypatch.setattr(sprint_module, "INDUCTOR_GRAPH_BACKEND", "aot_eager")
    steps = batches(sizes=(4, 4))
    eager = train(build(tiny, SASRecPPSPRINT), steps)
    model = build(tiny, SASRecPPSPRINT, backbone_compile="cuda_graph", sprint_compile="inductor_cuda_graph")
    graphed = train(model, steps)
    assert graphed[0] == pytest.approx(eager[0], rel=1e-5)
    for after_graphed, after_eager in zip(graphed[1], eager[1]):
        assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(after_graphed, after_eager))
    assert len(recordings) == 1 and len(recordings[0]) == 3 + 5  # the fields, then the five start vectors
    assert model.sprint._recorded_terms is not sprint_module.sprint_terms  # compiled
