r"""recbole_sprint.model.graphs
###########################

``backbone_compile: cuda_graph`` (issue 25): the backbone's training forward and backward, replayed from CUDA graphs.

A small model's training step on a fast GPU is bound by the host: SASRec++ at 2 layers on Amazon-Beauty (BCE, dense
attention, weights 0) dispatches 212 operators in its forward, 65 in its loss and 361 in the backward of both
(``python benchmarks/sprint_overhead.py --count_ops``, counted on the CPU), each a kernel launch plus Python and
autograd work, while the GPU's own work at 2 x 256, batch 512, length 50, fused attention, TF32 is 6.9 ms (H200,
twenty-ninth session: a step of 11.3 ms eagerly, 7.3 ms with this option). Recorded as two CUDA graphs
(``torch.cuda.make_graphed_callables``), the backbone's forward and backward are one launch each; the loss is
recorded with them, and SPRINT's terms too where ``sprint_compile`` is a graph mode (``sprint_in_backbone_graph``,
default on; else ``sprint_compile`` decides how they run); gradient clipping and the optimiser step stay as they
are.

What is recorded, per model (:class:`~recbole_sprint.model.full_sequence.FullSequence` mixin):

* ``graph_fields()``: the batch fields ``forward_all_positions`` reads (SASRec++ and RecBole's SASRec: the item
  sequence and its length); a model without it (``None``: HSTU, BERT4Rec) cannot use this option;
* the recorded function takes those fields and the targets and returns the loss (``full_sequence_loss_of`` with
  ``every_position``: negatives drawn on the device, means as masked sums, ``CE`` and ``sampled_softmax`` scoring
  the padded positions too instead of selecting the valid ones by boolean indexing, which a graph cannot hold), then
  whatever ``backbone_graph_outputs()`` lists (a SPRINT model: the attention column sums of every layer, which the
  hooks collected during the forward, so that the regulariser gets them as graph outputs, gradient included);
* ``backbone_graph_inputs()``: tensors the recorded function reads besides the batch, copied into the graph's own
  at each replay (a SPRINT model whose terms are recorded with the backbone: the power iterations' start vectors);
  ``backbone_graph_loss(loss, inputs)`` turns the recorded loss into ``(loss, extras)`` (default: the loss and
  ``backbone_graph_outputs()``; a SPRINT model with ``sprint_compile`` a graph mode: the loss plus SPRINT's terms,
  whose parts and new start vectors are the extras, so that its terms run in the backbone's two graphs instead of
  two graphs of their own);
* ``backbone_graph_key()`` separates graphs of one shape that run different code (SPRINT: whether this step
  collects column sums or computes the terms, which ``sprint_every`` > 1 switches);
* after each replay ``restore_backbone_graph_outputs(fields, extras)`` (``fields``: name -> tensor) does, eagerly, the
  bookkeeping the recorded Python does not repeat (SPRINT: the masks of the step and the collected column sums, or the
  replayed terms' parts and new start vectors).

The first training step with a new input signature (shapes, dtypes, key) records (``make_graphed_callables``'
warm-up runs, then the recording; an epoch's last, smaller batch is a second signature; each recording keeps its own
memory pool, so the backbone's activation memory counts once per signature, and stays reserved between steps and
during evaluation); every later step copies its fields into the graph's inputs and replays. Random numbers inside the
graphs (attention dropout: the dense path's, and the fused kernels' seed, which
:func:`~recbole_sprint.model.fused_attention.seed_tensor` draws on the device for this reason) are drawn anew on every
replay. The warm-up runs draw random numbers too, so a graphed run follows another random stream than an eager one
from the same seed. Off CUDA (or under autocast with its weight cache on, which the trainer switches off for this
option) the backbone runs eagerly, with one warning.

Requirements the recorded code meets (checked on the CPU by ``tests/model/test_graphs.py``, which records through a
stand-in with the replay semantics of CUDA graphs): no host synchronisation inside the forward or backward (no
``.item()``, no boolean indexing), tensors in and tensors out, no state kept by the forward's Python for later
steps.
"""

import contextlib
import gc
import warnings

import torch
from recbole.data.interaction import Interaction
from torch import nn

BACKBONE_COMPILE_MODES = ("none", "cuda_graph")


def check_backbone_compile(config, model):
    """``backbone_compile`` (unset: ``none``) for ``model``; ``ValueError`` naming the option and its values."""
    value = config["backbone_compile"] if "backbone_compile" in config else None
    value = "none" if value is None else value
    if value not in BACKBONE_COMPILE_MODES:
        raise ValueError(f"backbone_compile must be one of {list(BACKBONE_COMPILE_MODES)}, got {value!r}")
    if value == "cuda_graph":
        if getattr(model, "train_mode", None) != "full_sequence":
            raise ValueError("backbone_compile: cuda_graph records the full_sequence training forward: it needs "
                             f"train_mode: full_sequence, got train_mode {getattr(model, 'train_mode', None)!r}")
        if config["single_spec"] is False:  # RecBole's DDP launch (--nproc > 1)
            raise ValueError("backbone_compile: cuda_graph runs in one process (CUDA graphs under DDP need DDP's own "
                             "warm-up and are not supported here); with --nproc > 1 use backbone_compile: none")
        if model.graph_fields() is None:
            raise ValueError(f"backbone_compile: cuda_graph is not available for {type(model).__name__} (models "
                             "with graph_fields(): SASRecPP, SASRecPPSPRINT, SASRecSPRINT); allowed values for it: "
                             "['none']")
    return value


def cuda_graphs_usable(tensor):
    """Whether CUDA graphs can record here: a CUDA tensor, and no autocast with its weight cache (which
    ``torch.cuda.make_graphed_callables`` refuses)."""
    return tensor.is_cuda and not (torch.is_autocast_enabled("cuda") and torch.is_autocast_cache_enabled())


def warm_capture_stream(module, sample):
    """One eager forward and backward of ``module`` on the stream that ``torch.cuda.graph`` records on by default,
    before ``make_graphed_callables``: before torch 2.12 that function warms up on a stream of its own and records on
    this one, so set-up that happens on a stream's first use (e.g. a cuBLAS workspace) would otherwise happen inside
    the recording. (A guess at why the first recording of a process failed on the H200; not verified.)"""
    if getattr(torch.cuda.graph, "default_capture_stream", False) is None:
        torch.cuda.graph.default_capture_stream = torch.cuda.Stream()
    stream = getattr(torch.cuda.graph, "default_capture_stream", None)
    if stream is None:
        return
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        outputs = [output for output in module(*sample) if output.requires_grad]
        leaves = [arg for arg in sample if arg.requires_grad] + [p for p in module.parameters() if p.requires_grad]
        torch.autograd.grad(outputs, leaves, [torch.ones_like(output) for output in outputs], allow_unused=True)
    torch.cuda.current_stream().wait_stream(stream)
    torch.cuda.synchronize()


@contextlib.contextmanager
def no_collection_while_recording():
    """Python's cyclic garbage collector run before a recording and off during it (restored after).

    A model with ``backbone_compile: cuda_graph`` and its :class:`BackboneGraphs` refer to each other, so a discarded
    model's CUDA graphs are freed by the cyclic collector, at a moment of its choosing; freeing a graph
    (``cudaGraphDestroy``, its memory pool released) while another graph records invalidates that recording
    ("operation failed due to a previous error during capture"), as torch's own ``make_graphed_callables`` notes.
    The likely cause of the recordings that failed, at times, in processes that had trained other models with graphs
    before (``sprint_overhead.py --check_graphs``, H200 and H100, thirty-fourth and thirty-fifth sessions): the
    garbage is collected here first, and no collection runs inside the recording. With it that check passed whole,
    twice, on an H100 (thirty-sixth session; benchmarks/results/README.md)."""
    gc.collect()
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class RecordedBackbone(nn.Module):
    """What ``make_graphed_callables`` records: the model's all-position forward and its loss, fields in, tensors
    out.

    The model is this module's submodule (its parameters are the recording's parameters); the model keeps this module
    outside its own module tree (in :class:`BackboneGraphs`), so its ``state_dict`` and ``parameters()`` are
    unchanged."""

    def __init__(self, model, names):
        super().__init__()
        self.model = model
        self.names = names

    def forward(self, *args):
        model = self.model
        fields, inputs = args[: len(self.names)], args[len(self.names) :]
        interaction = Interaction(dict(zip(self.names, fields)))
        loss = model.full_sequence_loss_of(interaction, every_position=True)  # []
        loss, extras = model.backbone_graph_loss(loss, inputs)
        return (loss, *extras)


class BackboneGraphs:
    """The recorded graphs of one model, per input signature (see the module docstring)."""

    def __init__(self, model):
        self.model = model
        self.graphs = {}  # signature -> the graphed RecordedBackbone
        self._warned = False

    def __getstate__(self):  # copies (deepcopy, pickle) record again: CUDA graphs are not copied
        return {"model": self.model, "graphs": {}, "_warned": self._warned}

    def loss(self, interaction):
        """The model's full-sequence loss of ``interaction`` (``full_sequence_loss_of``), backbone and loss replayed
        from CUDA graphs."""
        model = self.model
        if not (model.training and torch.is_grad_enabled()):
            return model.full_sequence_loss_of(interaction)
        names = (*model.graph_fields(), model.ITEM_TARGET_SEQ)
        fields = tuple(interaction[name] for name in names)
        if not cuda_graphs_usable(fields[0]):
            if not self._warned:
                self._warned = True
                warnings.warn("backbone_compile: cuda_graph records CUDA graphs, which need a CUDA device (and no "
                              "autocast weight cache); the backbone runs eagerly here", RuntimeWarning)
            return model.full_sequence_loss_of(interaction)
        inputs = tuple(model.backbone_graph_inputs())
        signature = (tuple((tuple(arg.shape), arg.dtype) for arg in (*fields, *inputs)), model.backbone_graph_key())
        graphed = self.graphs.get(signature)
        if graphed is None:
            graphed = self.graphs[signature] = self.record(names, fields, inputs)
        loss, *extras = graphed(*fields, *inputs)
        model.restore_backbone_graph_outputs(dict(zip(names, fields)), extras)
        return loss

    def record(self, names, fields, inputs=()):
        """Records the forward with the loss, and the backward, for the signature of ``fields`` and the model's other
        ``inputs`` (a few eager warm-up runs first)."""
        module = RecordedBackbone(self.model, names)
        sample = tuple(arg.clone() for arg in (*fields, *inputs))
        try:
            with no_collection_while_recording():
                warm_capture_stream(module, sample)
                return torch.cuda.make_graphed_callables(module, sample, allow_unused_input=True)
        except RuntimeError as error:  # a failed recording can leave CUDA's random-number state unusable: stop here
            raise RuntimeError(f"backbone_compile: cuda_graph could not record the backbone as CUDA graphs ({error}); "
                               "train with backbone_compile: none") from error
