"""What SPRINT does to the tail share of the top-1 and to the attention column sums (issue 24), on a small model.

Trains four runs with the same seed and data, with history-masked evaluation (``eval_exclude_history``), for a
fixed number of epochs (no model selection: the last weights are tested), full-sequence BCE:

* SASRecSPRINT with every SPRINT weight 0 (RecBole's SASRec) and with the plugin defaults (2.5, 0.01, 0.1);
* SASRecPPSPRINT with every weight 0 (SASRec++) and with lambda_attn 5, lambda_ffn 0.1, lambda_emb 0 (the paper
  benchmark's SASRec++-SPRINT row).

For each: test NDCG@5, Hit@1, Hit@5, TailExposure@1 (share of top-1 slots on tail items, tail = the 80% least
popular items), HistoryShare@1 (top-1 slots holding a history item before masking), and attention statistics of
the trained model on the validation sequences (one batch of every validation user, eval mode, so no dropout):
the largest column sum of each layer (max over heads, sequences and the keys SPRINT regularises, over the queries
it regularises: ``sprint_masks``; causal models: query i sees keys j <= i, BERT4Rec: every valid key), averaged
over layers; the soft maximum S~ (tau = 4, over the batch) averaged over layers and heads, beside log(N)/tau (N the
batch's valid keys of one head: S~ of N equal columns c is c + log(N)/tau); the share of the
attention mass on the first key of each sequence (the causal "sink"); the share on keys whose item is in the
20% most popular training items; the exact spectral norms of E, of each head's W_V (mean over heads and
layers) and of W_O (mean over layers). Prints a Markdown table.

    python benchmarks/sprint_direction.py --dataset=ml-100k --epochs=30 --seed=2020

``--runs='SASRecSPRINT:2.5,0,0;SASRecSPRINT:0,0,0.1'`` replaces the four runs (one term at a time, e.g.; also
``BERT4RecSPRINT:...`` with ``--loss_type=CE``). Any other ``--key=value`` is a config override for every run
(RecBole's syntax).
"""

import argparse
import math
import sys
import tempfile
import time

RUNS = [
    ("SASRecSPRINT", (0.0, 0.0, 0.0)),
    ("SASRecSPRINT", (2.5, 0.01, 0.1)),
    ("SASRecPPSPRINT", (0.0, 0.0, 0.0)),
    ("SASRecPPSPRINT", (5.0, 0.1, 0.0)),
]
METRIC_COLUMNS = ["ndcg@5", "hit@1", "hit@5", "tailexposure@1", "historyshare@1"]
ATTENTION_COLUMNS = ["max column sum", "S~ (tau 4)", "log(N)/tau", "first-key share", "head-item-key share"]
NORM_COLUMNS = ["sigma(E)", "sigma(W_V,h)", "sigma(W_O)"]


def probs_modules(model):
    """The modules whose output is each layer's attention matrix applied to V (dense attention): RecBole's
    encoder (SASRec, BERT4Rec), SASRec++'s blocks, HSTU's layers (its pointwise SiLU attention, rows not normalised
    to 1, so the mass shares below are of a signed total)."""
    if hasattr(model, "trm_encoder"):
        return [layer.multi_head_attention.attn_dropout for layer in model.trm_encoder.layer]
    return [layer.attn_dropout if hasattr(layer, "attn_dropout") else layer.attention.attn_dropout
            for layer in model.layers]


def attention_statistics(model, interaction, item_popularity, tau=4.0):
    """Column-sum statistics of the trained model's attention on ``interaction`` (eval mode)."""
    import torch

    captured, seen = [], []
    handles = [module.register_forward_hook(lambda m, i, o: captured.append(o.detach().double()))
               for module in probs_modules(model)]
    # the sequence the encoder saw (BERT4Rec's full_sort_predict shifts it and writes its [MASK] at the end);
    # RecBole calls self.forward directly, which module hooks do not see
    forward = model.forward
    model.forward = lambda item_seq, *args, **kwargs: seen.append(item_seq) or forward(item_seq, *args, **kwargs)
    model.eval()
    try:
        with torch.no_grad():
            model.full_sort_predict(interaction)
    finally:
        del model.forward
        for handle in handles:
            handle.remove()
    item_seq = seen[0]  # [B, n], right-padded
    queries, keys = model.sprint_masks(item_seq)  # [B, n] each: the query rows and key columns SPRINT regularises
    valid = keys
    n = item_seq.size(1)
    ones = torch.ones(n, n, dtype=torch.float64, device=item_seq.device)
    bidirectional = hasattr(model, "mask_token")  # BERT4Rec: every valid query sees every valid key
    allowed = ones if bidirectional else torch.tril(ones)
    head_items = item_popularity >= torch.quantile(item_popularity[1:].double(), 0.8)  # top 20% by training count
    head_keys = head_items[item_seq.clamp(max=item_popularity.numel() - 1)] & valid  # [B, n] ([MASK] is no key)
    maxima, soft, first, head = [], [], [], []
    for probs in captured:  # [B, H, n, n]
        kept = probs * allowed * queries[:, None, :, None] * keys[:, None, None, :]
        columns = kept.sum(2)  # [B, H, n], over the regularised queries
        mass = kept.sum((2, 3))  # [B, H]
        maxima.append(columns.masked_fill(~valid[:, None, :], float("-inf")).amax().item())
        scaled = (tau * columns).masked_fill(~valid[:, None, :], float("-inf"))
        soft.append((torch.logsumexp(scaled.transpose(0, 1).reshape(probs.size(1), -1), 1) / tau).mean().item())
        first.append((columns[:, :, 0].sum() / mass.sum()).item())
        head.append(((columns * head_keys[:, None, :]).sum() / mass.sum()).item())
    mean = lambda values: sum(values) / len(values)  # noqa: E731
    # S~ of N equal columns c is c + log(N)/tau: where every column sum is << log(N)/tau, S~ is that offset plus
    # about the mean column, and its gradient spreads evenly over the N columns (N: valid keys of one head)
    offset = math.log(valid.sum().item()) / tau
    return dict(zip(ATTENTION_COLUMNS, (mean(maxima), mean(soft), offset, mean(first), mean(head))))


def run(model_name, weights, dataset_name, overrides):
    from recbole.utils import init_seed

    import torch

    from recbole_sprint.config import Config
    from recbole_sprint.data import create_dataset, data_preparation
    from recbole_sprint.utils import get_model, get_trainer

    sprint = dict(zip(("sprint_attn_weight", "sprint_ffn_weight", "sprint_emb_weight"), weights))
    config = Config(model=model_name, dataset=dataset_name, config_dict={**overrides, **sprint})
    init_seed(config["seed"], config["reproducibility"])
    dataset = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    init_seed(config["seed"], config["reproducibility"])
    model = get_model(model_name)(config, train_data._dataset).to(config["device"])
    trainer = get_trainer(config["MODEL_TYPE"], model_name)(config, model)
    start = time.time()
    trainer.fit(train_data, None, saved=False, show_progress=False)  # fixed epochs, no model selection
    seconds = time.time() - start
    result = trainer.evaluate(test_data, load_best_model=False, show_progress=False)
    item_popularity = torch.bincount(train_data._dataset.inter_feat[config["ITEM_ID_FIELD"]],
                                     minlength=dataset.item_num).to(config["device"])
    interaction = next(iter(valid_data))[0].to(config["device"])  # every validation user (eval_batch_size)
    statistics = attention_statistics(model, interaction, item_popularity)
    statistics["users in batch"] = interaction[model.ITEM_SEQ].size(0)
    norms = model.sprint.spectral_norms()  # exact spectral norms of the regularised matrices
    layers = range(config["n_layers"])
    statistics["sigma(E)"] = norms["item_embedding"]
    statistics["sigma(W_V,h)"] = sum(sum(norms[f"layer{i}.value"]) / len(norms[f"layer{i}.value"]) for i in layers)
    statistics["sigma(W_V,h)"] /= len(layers)
    statistics["sigma(W_O)"] = sum(norms[f"layer{i}.output"] for i in layers) / len(layers)
    return result, statistics, seconds


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (tiny CPU models: 1 is fastest)")
    parser.add_argument("--runs", default=None, help="instead of the four runs above, e.g. "
                        "'SASRecSPRINT:2.5,0,0;SASRecSPRINT:0,0,0.1' (model:lambda_attn,lambda_ffn,lambda_emb;...)")
    args, rest = parser.parse_known_args(argv)
    from recbole_sprint.compat import literal_value  # the plugin's parsing of --key=value: literals, never code

    overrides = {key: literal_value(value) for key, _, value in (item.lstrip("-").partition("=") for item in rest)}
    sys.argv = sys.argv[:1]  # RecBole's Config reads --key=value from sys.argv: the overrides go in the dict
    import torch

    import recbole_sprint  # noqa: F401  (compatibility shims, plugin metrics)

    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as folder:
        overrides = {
            "epochs": args.epochs, "train_mode": "full_sequence", "loss_type": "BCE", "eval_exclude_history": True,
            "metrics": ["NDCG", "Hit", "TailExposure", "HistoryShare"], "topk": [1, 5], "valid_metric": "NDCG@5",
            "eval_batch_size": 100000, "state": "WARNING", "show_progress": False, "checkpoint_dir": folder,
            **overrides,
        }
        header = ["model", "SPRINT (attn, ffn, emb)"] + METRIC_COLUMNS + ATTENTION_COLUMNS + NORM_COLUMNS
        header += ["train s"]
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        runs = RUNS
        if args.runs:
            runs = [(name, tuple(float(w) for w in weights.split(",")))
                    for name, weights in (item.split(":") for item in args.runs.split(";"))]
        for model_name, weights in runs:
            result, statistics, seconds = run(model_name, weights, args.dataset, overrides)
            values = [f"{float(result[c]):.4f}" for c in METRIC_COLUMNS]
            values += [f"{statistics[c]:.3f}" for c in ATTENTION_COLUMNS + NORM_COLUMNS] + [f"{seconds:.0f}"]
            lines.append(f"| {model_name} | {weights} | " + " | ".join(values) + " |")
            print(lines[-1], flush=True)
        print(f"\n{args.dataset}, {args.epochs} epochs, overrides {overrides}, "
              f"{statistics['users in batch']} validation users in the attention batch\n")
        print("\n".join(lines))


if __name__ == "__main__":
    main()
