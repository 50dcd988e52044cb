"""A trainer written by a stranger: plain Python and PyYAML, nothing from this project.

    python stranger_trainer.py --curriculum C.yaml --out DIR --steps 40 --eval-every 10 [--resume]

It reads a curriculum in this project's schema with the reader of docs/curriculum_schema.md (copied as
is), "trains" for --steps steps (a made-up accuracy that a high spectrum weight hurts), and appends one JSON
line per evaluation to DIR/log.jsonl under its own names: iter, acc, loss, and the curriculum it applied
(spec_w, prec_w, max_len). Its checkpoint is DIR/state.json; --resume goes on from there and, like many
trainers, appends again the rows after that checkpoint.

Faults for tests, chosen by the curriculum's name (a comma-separated list in each variable):
STRANGER_FAIL_ONCE=name@step exits 1 at that step the first time; STRANGER_IGNORE_TERM=name ignores SIGTERM;
STRANGER_CRASH=name exits 3 before training; STRANGER_SILENT=name hangs before its first row;
STRANGER_NO_STEP=name writes "it" instead of "iter". STRANGER_STEP_S is the time a step takes.
"""

import argparse
import json
import math
import os
import signal
import sys
import time

import yaml


# --- the reader of docs/curriculum_schema.md, as an outsider would copy it -------------------------------
def curriculum_at(cur, step, opened=None):
    """Data difficulty and loss weights at `step`. `opened`: loss -> step its accuracy gate opened."""
    end = 0
    for stage in cur["stages"]:  # the first stage that ends after `step`; past the end, the last one
        end += stage["steps"]
        if step < end:
            break
    state = {"stage": stage["name"], **{k: stage.get(k, 0) for k in ("min_length", "max_length", "noise_peaks")}}
    for loss in ("spectrum", "precursor"):
        s = cur.get(loss)
        if s is None:  # stage-list form: the stage's own weight
            state[loss + "_weight"] = stage.get(loss + "_loss_weight") or 0.0
            continue
        intro = s.get("intro_step") if s.get("intro_accuracy") is None else (opened or {}).get(loss)
        start, final, ramp = s.get("start_weight", 0.0), s.get("final_weight", 0.0), s.get("ramp_steps", 0)
        if intro is None or step < intro:
            state[loss + "_weight"] = 0.0
        elif ramp <= 0:
            state[loss + "_weight"] = final
        else:
            state[loss + "_weight"] = start + (final - start) * min(1.0, (step - intro) / ramp)
    return state


# ----------------------------------------------------------------------------------------------------------


def chosen(variable, name):
    """The fault settings in `variable` that name this curriculum: [] or e.g. ["20"] for name@20."""
    out = []
    for item in filter(None, os.environ.get(variable, "").split(",")):
        who, _, arg = item.partition("@")
        if who == name:
            out.append(arg)
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--curriculum", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--steps", type=int, required=True)
    p.add_argument("--eval-every", type=int, required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true")
    args = p.parse_args()
    with open(args.curriculum) as f:
        cur = yaml.safe_load(f)
    name = cur.get("name", "")
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "pid"), "w") as f:
        f.write(f"{os.getpid()}\n")
    print(f"stranger: curriculum {name}, {len(cur['stages'])} stages, seed {args.seed}", flush=True)
    seen = ("CUDA_VISIBLE_DEVICES", "OMP_NUM_THREADS", "WANDB_MODE", "WANDB_RUN_GROUP", "WANDB_RUN_ID")
    print("stranger: env " + " ".join(f"{k}={os.environ.get(k)!r}" for k in seen), flush=True)

    if chosen("STRANGER_IGNORE_TERM", name):
        signal.signal(signal.SIGTERM, lambda *_: print("stranger: ignoring SIGTERM", flush=True))
    else:
        def on_term(*_):
            print(f"stranger: SIGTERM at step {step}, exiting", flush=True)
            sys.exit(0)
        signal.signal(signal.SIGTERM, on_term)
    if chosen("STRANGER_CRASH", name):
        for i in range(25):
            print(f"stranger: loading shard {i}", flush=True)
        print("stranger: ValueError: shard 24 is corrupt", flush=True)
        sys.exit(3)

    state_path = os.path.join(args.out, "state.json")
    step, acc = 0, 0.0
    if args.resume and os.path.exists(state_path):
        with open(state_path) as f:
            saved = json.load(f)
        step, acc = saved["step"], saved["acc"]
        print(f"stranger: resumed at step {step}", flush=True)
    fail_at = [int(a) for a in chosen("STRANGER_FAIL_ONCE", name)]
    failed_marker = os.path.join(args.out, "failed_once")
    step_key = "it" if chosen("STRANGER_NO_STEP", name) else "iter"
    if chosen("STRANGER_SILENT", name):
        print("stranger: waiting for a data server that never answers", flush=True)
        while True:
            time.sleep(1)
    step_s = float(os.environ.get("STRANGER_STEP_S", "0.02"))

    while step < args.steps:
        now = curriculum_at(cur, step)
        # Made-up learning: accuracy climbs towards a ceiling that the spectrum weight lowers.
        ceiling = 0.95 - 0.8 * now["spectrum_weight"] - 0.3 * now["precursor_weight"]
        acc += (ceiling - acc) * 0.06
        step += 1
        time.sleep(step_s)
        if step in fail_at and not os.path.exists(failed_marker):
            open(failed_marker, "w").close()
            print(f"stranger: RuntimeError: planned failure at step {step}", flush=True)
            sys.exit(1)
        if step % args.eval_every and step < args.steps:
            continue
        row = {step_key: step, "acc": round(acc, 6), "loss": round(-math.log(max(acc, 1e-6)), 6),
               "spec_w": now["spectrum_weight"], "prec_w": now["precursor_weight"], "max_len": now["max_length"]}
        with open(os.path.join(args.out, "log.jsonl"), "a") as f:
            f.write(json.dumps(row) + "\n")
        with open(state_path + ".tmp", "w") as f:
            json.dump({"step": step, "acc": acc}, f)
        os.replace(state_path + ".tmp", state_path)
    print(f"stranger: done at step {step}, acc {acc:.4f}", flush=True)


if __name__ == "__main__":
    main()
