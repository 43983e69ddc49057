"""The confusion table and the sensitivity frontier of the verdicts harness: reading compare's
JSON reports (compare/report_json.cpp: top-level "verdict", "first_divergence": {tensor, layer,
reason} or null, "first_total_divergence", per tensor "name", "metrics": {"rel_l2", ...} and
"local_metrics" (with --model, else null)), judging each row, rendering JSON and Markdown.
Pure Python (no torch)."""

from __future__ import annotations

import json
import os
from collections import OrderedDict

from variants import PASS

MODES = ("model", "nomodel")   # compare with --model CKPT (teacher forcing) / without
OBSERVE = "observe"            # expected of a deviation that is recorded, not asserted (variants_hunyuan)
# Bugs that may legitimately change nothing on a prompt: the bf16 bias flips only tokens whose
# k/k+1 gap is under its rounding (the tiny fixtures keep every gap >= 1e-3 by construction).
INERT_OK = {"router-bias-bf16", "router-logits-bf16"}
GOOD = ("OK", "SEEN")          # results that do not make the harness exit 1
NOT_FINISHED = "not finished by the deadline"   # a compare still running when the stage's deadline hit
CUT = ("timeout", "skipped")   # runner.run's codes for a command killed at, or never started for, its time limit


def read_report(path):
    """Summary of one compare JSON report: verdict, first (tensor name or None), reason, seconds,
    error. A missing or unreadable file gives verdict None and the error."""
    out = OrderedDict(verdict=None, first=None, reason=None, first_total=None, seconds=None, error=None)
    if not path or not os.path.exists(path):
        out["error"] = "no report"
        return out
    try:
        with open(path) as f:
            j = json.load(f)
    except (OSError, ValueError) as e:
        out["error"] = f"unreadable report: {e}"
        return out
    out["verdict"] = j.get("verdict")
    fd = j.get("first_divergence") or None
    if fd:
        out["first"] = fd.get("tensor")
        out["reason"] = fd.get("reason")
    ft = j.get("first_total_divergence") or None
    if ft:
        out["first_total"] = ft.get("tensor")
    out["seconds"] = (j.get("stats") or {}).get("seconds")
    if j.get("error"):
        out["error"] = j.get("error")
    return out


def tensor_rel_l2(path, name, local):
    """rel-L2 of tensor `name` in a compare report: local_metrics (local=True, teacher forcing)
    or metrics (total). Returns (value, which) with which in {"local", "total"}; falls back to the
    total when the report has no local metrics for it (module-only dumps lack some inputs).
    (None, reason) when the tensor is absent."""
    try:
        with open(path) as f:
            j = json.load(f)
    except (OSError, ValueError, TypeError):
        return None, "no report"
    for t in j.get("tensors") or []:
        if t.get("name") != name:
            continue
        if local and t.get("local_metrics"):
            v = t["local_metrics"].get("rel_l2")
            if isinstance(v, (int, float)):
                return float(v), "local"
        m = t.get("metrics") or {}
        v = m.get("rel_l2")
        if isinstance(v, (int, float)):
            return float(v), "total"
        return None, "no rel_l2"
    return None, "tensor not in report"


def judge(expected, verdict, first):
    """OK / WRONG / NOT RUN (SEEN for an OBSERVE row that ran) for one compare of one dump.
    expected: "pass", OBSERVE or a tensor name."""
    if verdict is None:
        return "NOT RUN"
    if expected == OBSERVE:
        return "SEEN"
    if expected == PASS:
        return "OK" if verdict == "pass" else "WRONG"
    return "OK" if (verdict == "fail" and first == expected) else "WRONG"


def detected(expected_tensor, rep):
    """Sweep detection: the compare failed and named the expected tensor first."""
    return rep.get("verdict") == "fail" and rep.get("first") == expected_tensor


def make_rows(variants, reports, dump_notes=None):
    """variants: rows of variants.*_variants (each with variant, kind, expected, role, ...);
    reports: {(variant, mode): read_report(...) dict}; dump_notes: {variant: dict} from the dump
    makers (errors, HF ground-truth first difference, inert bugs). Returns table rows."""
    dump_notes = dump_notes or {}
    rows = []
    for v in variants:
        note = dump_notes.get(v["variant"]) or {}
        expected = v["expected"]
        if v["role"] != "honest" and note.get("inert"):
            if v.get("bug") in INERT_OK:
                expected = PASS  # the bug changed nothing on this input: there is nothing to find
            else:                # a patch that changed nothing did not reach the computation
                note = dict(note, ok=False, error=f"planted bug {v.get('bug')} changed nothing (the dump is bitwise "
                                                  "equal to the honest one): the patch missed the computation")
        r = OrderedDict(variant=v["variant"], role=v["role"], kind=v["kind"], config=v.get("config"),
                        expected=expected)
        for mode in MODES:
            rep = reports.get((v["variant"], mode)) or {}
            verdict = rep.get("verdict")
            if note.get("error") and (verdict is None or note.get("ok") is False and note.get("inert")):
                r[mode] = OrderedDict(verdict="error", first=None, result="ERROR", error=note["error"][-300:])
                continue
            res = judge(expected, verdict, rep.get("first"))
            cut = rep.get("error") == NOT_FINISHED or rep.get("exit") in CUT
            if verdict is None and rep.get("error") and rep.get("error") != "no report" and not cut:
                res = "ERROR"   # a compare that ended without a verdict; one cut by its time limit is NOT RUN
            r[mode] = OrderedDict(verdict=verdict, first=rep.get("first"), result=res,
                                  seconds=rep.get("seconds"), error=rep.get("error") if verdict is None else None)
        if note:
            r["hf_first_difference"] = note.get("hf_first_difference")
            r["effect_rel_l2"] = note.get("effect_rel_l2")
            flips = note.get("routing_flips", note.get("routing_flips_by_layer"))
            if flips is not None:
                r["routing_flips_vs_honest"] = flips
            if note.get("inert"):
                r["note"] = "bug inert on this input (dump bitwise equal to the honest one): expected pass"
        rows.append(r)
    return rows


def exit_status(rows, mode="model"):
    """0 when every row's `mode` column is OK (or SEEN: recorded, not asserted), else 1."""
    return 0 if all(r[mode]["result"] in GOOD for r in rows) else 1


def _cell(c):
    if c["result"] == "ERROR" and c.get("verdict") in (None, "error"):
        return "ERROR"
    v = c.get("verdict") or "-"
    return f"{v}" + (f" `{c['first']}`" if c.get("first") else "")


def markdown(title, rows, notes=()):
    """The confusion table as Markdown."""
    out = [f"# {title}", ""]
    out += ["| dump | kind | expected | with --model | | without --model | | HF ground truth (first diff vs honest) |",
            "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        gt = r.get("hf_first_difference")
        gts = ""
        if isinstance(gt, dict):
            gts = f"`{gt.get('tensor')}`"
            if r.get("effect_rel_l2") is not None:
                gts += f" (effect rel-L2 {r['effect_rel_l2']:.3g} at expected)"
            fl = r.get("routing_flips_vs_honest")
            if isinstance(fl, dict) and any(fl.values()):
                gts += "; routing flips vs honest: " + ", ".join(f"{k.split('.moe')[0]} {v}" for k, v in fl.items() if v)
        elif r["role"] != "honest":
            gts = "none (inert)" if r.get("note") else ""
        exp = {PASS: "pass", OBSERVE: "observe (not asserted)"}.get(r["expected"], f"`{r['expected']}`")
        out.append(f"| {r['variant']} | {r['kind']} | {exp} | {_cell(r['model'])} | **{r['model']['result']}** | "
                   f"{_cell(r['nomodel'])} | **{r['nomodel']['result']}** | {gts} |")
    asserted = [r for r in rows if r["expected"] != OBSERVE]
    ok_m = sum(r["model"]["result"] == "OK" for r in asserted)
    ok_n = sum(r["nomodel"]["result"] == "OK" for r in asserted)
    out += ["", f"With --model: {ok_m}/{len(asserted)} OK. Without --model: {ok_n}/{len(asserted)} OK."
            + (f" ({len(rows) - len(asserted)} observed rows not counted.)" if len(asserted) < len(rows) else ""), ""]
    out += [f"- {n}" for n in notes]
    return "\n".join(out) + "\n"


def text_table(rows):
    """A compact fixed-width table for the log."""
    w = max([len(r["variant"]) for r in rows] + [8])
    lines = [f"{'dump':<{w}}  {'expected':<34}  {'--model':<7} {'first divergence':<38}  {'no model':<8} first divergence"]
    for r in rows:
        m, n = r["model"], r["nomodel"]
        lines.append(f"{r['variant']:<{w}}  {str(r['expected'])[:34]:<34}  {m['result']:<7} "
                     f"{(m.get('verdict') or '-') + ' ' + str(m.get('first') or ''):<38.38}  {n['result']:<8} "
                     f"{(n.get('verdict') or '-') + ' ' + str(n.get('first') or '')}")
    return "\n".join(lines)


def write_tables(out_dir, stem, title, rows, notes=(), extra=None):
    """<out_dir>/<stem>.json and <stem>.md. Returns the Markdown text."""
    os.makedirs(out_dir, exist_ok=True)
    md = markdown(title, rows, notes)
    j = OrderedDict(title=title, rows=rows, notes=list(notes),
                    ok_with_model=sum(r["model"]["result"] == "OK" for r in rows),
                    ok_without_model=sum(r["nomodel"]["result"] == "OK" for r in rows), total=len(rows))
    if extra:
        j.update(extra)
    with open(os.path.join(out_dir, stem + ".json"), "w") as f:
        json.dump(j, f, indent=1)
        f.write("\n")
    with open(os.path.join(out_dir, stem + ".md"), "w") as f:
        f.write(md)
    return md


# ---- sensitivity frontier -----------------------------------------------------------------------

class Bisect:
    """Smallest grid index whose compare detects the bug, assuming detection is monotone in eps
    (larger eps, larger error). The largest eps is tried first (if it is not detected, nothing
    smaller is tried); then bisection between the largest undetected and smallest detected index.
    result: index or None (nothing detected); tried: {index: bool}."""

    def __init__(self, n):
        self.n = n
        self.tried = {}
        self.lo = -1          # largest index known undetected (-1: none yet)
        self.hi = None        # smallest index known detected
        self.done = n == 0

    def next(self):
        """Next grid index to compare, or None when finished."""
        if self.done:
            return None
        if self.hi is None:
            return self.n - 1 if (self.n - 1) not in self.tried else None
        if self.hi - self.lo <= 1:
            self.done = True
            return None
        return (self.lo + self.hi) // 2

    def record(self, i, found):
        self.tried[i] = bool(found)
        if found:
            self.hi = i if self.hi is None else min(self.hi, i)
        else:
            self.lo = max(self.lo, i)
            if self.hi is None:
                self.done = True   # the largest eps is not detected
        if self.hi is not None and self.hi - self.lo <= 1:
            self.done = True

    @property
    def result(self):
        return self.hi


def frontier_rows(searches, grid, floors, effects):
    """searches: {(bug, kind, mode): Bisect}; floors: {(bug, kind, mode): (floor, which)};
    effects: {(bug, eps, kind): HF-measured effect rel-L2 at the expected tensor}. Rows of the
    frontier table."""
    rows = []
    for (bug, kind, mode), b in sorted(searches.items()):
        i = b.result
        eps = grid[i] if i is not None else None
        below = grid[b.lo] if b.lo >= 0 else None
        floor, which = floors.get((bug, kind, mode), (None, None))
        eff = effects.get((bug, eps, kind)) if eps is not None else None
        rows.append(OrderedDict(
            bug=bug, kind=kind, mode=mode, smallest_detected_eps=eps, largest_undetected_eps=below,
            tried={f"{grid[k]:g}": v for k, v in sorted(b.tried.items())},
            noise_floor=floor, noise_floor_metric=which, effect_rel_l2_at_smallest=eff,
            effect_in_floor_units=(eff / floor) if (eff is not None and floor) else None,
            eps_in_floor_units=(eps / floor) if (eps is not None and floor) else None))
    return rows


def frontier_markdown(rows, T, notes=()):
    out = ["# Sensitivity frontier", "",
           f"Prompt T = {T} (the sweep's own, smaller than the full run's, to save time). Detected = compare "
           "fails and names the expected tensor first. Grid searched by bisection assuming detection is "
           "monotone in eps (tried points listed). Noise floor = the honest bf16 fast dump's rel-L2 at the "
           "same tensor (local with --model, total without). Effect = rel-L2 between the bugged and the "
           "honest HF dump at that tensor (HF's own numbers).", "",
           "| bug | kind | compare | smallest eps detected | largest eps missed | noise floor | effect at smallest | "
           "effect / floor | eps / floor | tried |", "|---|---|---|---|---|---|---|---|---|---|"]

    def f(x):
        return "-" if x is None else f"{x:.3g}"
    for r in rows:
        tried = ", ".join(f"{k}:{'Y' if v else 'n'}" for k, v in r["tried"].items())
        out.append(f"| {r['bug']} | {r['kind']} | {'--model' if r['mode'] == 'model' else 'no model'} | "
                   f"{f(r['smallest_detected_eps'])} | {f(r['largest_undetected_eps'])} | {f(r['noise_floor'])} "
                   f"({r['noise_floor_metric'] or '-'}) | {f(r['effect_rel_l2_at_smallest'])} | "
                   f"{f(r['effect_in_floor_units'])} | {f(r['eps_in_floor_units'])} | {tried} |")
    out += [""] + [f"- {n}" for n in notes]
    return "\n".join(out) + "\n"
