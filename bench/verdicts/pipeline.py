"""One harness pipeline: the HF worker writes dumps (GPU), the exact reference runs as soon as
the first honest dump exists (CPU), hyoracle's CUDA path writes its dumps (optional), and
compares (with and without --model) run in parallel as soon as the reference and their dump
exist. Sweep searches (bisection over eps) are scheduled the same way. Everything polls; every
subprocess has a timeout capped by the run's deadline. Pure Python (the worker is a subprocess)."""

from __future__ import annotations

import json
import os
import time
from concurrent.futures import ThreadPoolExecutor

import runner
import table
from variants import priority

HERE = os.path.dirname(os.path.abspath(__file__))
WORKER_SOURCES = ("hf", "tencent")                   # rows whose dumps the worker subprocess writes
FIRST_CONFIGS = ("bf16-fast", "tencent-bf16")        # loaded first: the reference waits for their dumps


class Pipeline:
    def __init__(self, *, name, hy, ckpt, ckpt_label, tokens, generate, rows, dump_dir, work, args, deadline,
                 ref_source, searches=None, grid=None, device=None, worker="hf_worker.py"):
        self.name, self.hy, self.ckpt, self.ckpt_label = name, hy, ckpt, ckpt_label
        self.worker = worker                         # the engine's script (PLAN / STATUS protocol)
        self.tokens, self.G, self.rows, self.dump_dir, self.work = tokens, generate, rows, dump_dir, work
        self.args, self.dl, self.device = args, deadline, device
        self.ref_source = ref_source                 # variant whose dump gives --tokens-from
        self.by_variant = {r["variant"]: r for r in rows}
        self.searches = searches or {}               # (bug, kind, mode) -> table.Bisect
        self.grid = grid or []
        self.logs = os.path.join(work, "logs")
        self.cmp_dir = os.path.join(work, "compare")
        os.makedirs(self.logs, exist_ok=True)
        os.makedirs(self.cmp_dir, exist_ok=True)
        self.ref = os.path.join(work, "ref")
        self.status_path = os.path.join(work, "status.jsonl")
        self.notes = {}                              # variant -> worker status record
        self.reports = {}                            # (variant, mode) -> read_report
        self.timings = {}
        self.events = []

    # ---- paths ---------------------------------------------------------------------------------
    def dump_path(self, variant):
        return os.path.join(self.dump_dir, variant)

    def json_path(self, variant, mode):
        return os.path.join(self.cmp_dir, f"{variant}.{mode}.json")

    def say(self, msg):
        runner.log(f"{self.name}: {msg}", self.dl.t0)

    # ---- stages --------------------------------------------------------------------------------
    def plan(self):
        from variants_hunyuan import OBSERVE, all_configs
        configs = all_configs()
        models = {}
        for r in self.rows:
            if r["source"] not in WORKER_SOURCES:
                continue
            c = configs[r["config"]]
            m = models.setdefault(r["config"], dict(name=r["config"], dtype=c["dtype"], attn=c["attn"],
                                                    experts=c["experts"], dumps=[]))
            m["dumps"].append(dict(variant=r["variant"], kind=r["kind"], out=self.dump_path(r["variant"]),
                                   bug=r.get("bug"), params=r.get("params") or {},
                                   expected=None if r["expected"] in ("pass", OBSERVE) else r["expected"]))
        for m in models.values():   # honest dumps first: the bugs are diffed against them
            m["dumps"].sort(key=lambda d: (d["bug"] is not None,))
        order = sorted(models.values(), key=lambda m: 0 if m["name"] in FIRST_CONFIGS else 1)
        p = dict(ckpt=self.ckpt, checkpoint_label=self.ckpt_label, tokens=self.tokens, generate=self.G,
                 device=self.device, models=order)
        path = os.path.join(self.work, "plan.json")
        with open(path, "w") as f:
            json.dump(p, f, indent=1)
        return path

    def read_status(self):
        if not os.path.exists(self.status_path):
            return
        with open(self.status_path) as f:
            for line in f:
                line = line.strip()
                if not line:
                    continue
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue  # a line being written
                if rec.get("variant") not in self.notes:
                    self.notes[rec["variant"]] = rec
                    self.say(f"dump {rec['variant']}: {'ok' if rec.get('ok') else 'FAILED'} "
                             f"({rec.get('seconds')} s)" + (f" HF first diff {(rec.get('hf_first_difference') or {}).get('tensor') if isinstance(rec.get('hf_first_difference'), dict) else rec.get('hf_first_difference')}" if rec.get("bug") else ""))

    def dump_ready(self, variant):
        n = self.notes.get(variant)
        return bool(n and n.get("ok"))

    def compare_cmd(self, variant, mode):
        r = self.by_variant[variant]
        cmd = [self.hy, "compare", self.ref, self.dump_path(variant), "--json", self.json_path(variant, mode), "-q",
               "--threads", str(self.args.compare_threads)]
        if mode == "model":
            cmd += ["--model", self.ckpt]
        ff = self.args.fail_fast
        if ff == "all" or (ff == "bugs" and r["role"] != "honest"):
            cmd += ["--fail-fast"]
        return cmd

    def do_compare(self, variant, mode):
        limit = self.args.compare_timeout if mode == "model" else self.args.compare_timeout_nomodel
        log = os.path.join(self.logs, f"compare-{variant}.{mode}.log")
        jp = self.json_path(variant, mode)
        if os.path.exists(jp):
            os.remove(jp)
        rc, s = runner.run(self.compare_cmd(variant, mode), log, self.dl.cap(limit))
        rep = table.read_report(jp)
        if rep["verdict"] is None:
            rep["error"] = f"compare exit {rc}; see {os.path.relpath(log, self.work)}: " + _tail(log)
        rep["exit"] = rc
        rep["wall_s"] = round(s, 1)
        return rep

    # ---- the loop ------------------------------------------------------------------------------
    def run(self, cuda_rows=()):
        t0 = time.time()
        plan = self.plan()
        # VERDICTS_WORKER: a stand-in worker (fake_worker.py tests the plumbing on a CPU)
        wscript = os.environ.get("VERDICTS_WORKER") or os.path.join(HERE, self.worker)
        worker = runner.Background([runner.python(), wscript, plan, self.status_path],
                                   os.path.join(self.logs, "hf_worker.log"), self.dl.cap(self.args.worker_timeout))
        self.say(f"HF worker started ({len(self.rows)} rows)")
        ref_bg = None
        cuda_queue = list(cuda_rows)
        cuda_bg = None
        pool = ThreadPoolExecutor(max_workers=self.args.jobs)
        inflight = {}            # future -> (variant, mode)
        submitted = set()
        sweep_inflight = set()
        ref_ok = False
        while True:
            self.read_status()
            wrc = worker.poll()
            if wrc is not None and "worker" not in self.timings:
                self.timings["worker"] = round(worker.seconds(), 1)
                self.say(f"HF worker finished: {wrc} after {worker.seconds():.0f} s")
            # the reference, from the first honest dump
            if ref_bg is None and self.dump_ready(self.ref_source):
                src = self.dump_path(self.ref_source)
                ref_bg = runner.Background(
                    [self.hy, "run", "--model", self.ckpt, "--tokens-from", src, "--generate", str(self.G),
                     "--dump-steps", "--precision", "exact", "--threads", str(self.args.threads), "--dump", self.ref],
                    os.path.join(self.logs, "reference.log"), self.dl.cap(self.args.ref_timeout))
                self.say("reference run started")
            if ref_bg is not None and not ref_ok and ref_bg.poll() is not None and "reference" not in self.timings:
                self.timings["reference"] = round(ref_bg.seconds(), 1)
                ref_ok = ref_bg.rc == 0 and os.path.exists(os.path.join(self.ref, "manifest.json"))
                self.say(f"reference run: exit {ref_bg.rc} after {ref_bg.seconds():.0f} s")
                if not ref_ok:
                    self.events.append("reference run failed: " + _tail(os.path.join(self.logs, "reference.log")))
            # hyoracle's CUDA path, one dump at a time
            if cuda_bg is not None and cuda_bg[1].poll() is not None:
                v, bg = cuda_bg
                ok = bg.rc == 0 and os.path.exists(os.path.join(self.dump_path(v), "manifest.json"))
                self.notes[v] = {"variant": v, "ok": ok, "seconds": round(bg.seconds(), 1),
                                 "error": None if ok else f"hyoracle run --device cuda exit {bg.rc}: " +
                                 _tail(os.path.join(self.logs, f"{v}.log"))}
                self.say(f"dump {v}: {'ok' if ok else 'FAILED'} ({bg.seconds():.0f} s)")
                cuda_bg = None
            if cuda_bg is None and cuda_queue and self.dump_ready(self.ref_source):
                r = cuda_queue.pop(0)
                dt = r["config"].split("-", 1)[1]
                cuda_bg = (r["variant"], runner.Background(
                    [self.hy, "run", "--device", "cuda", "--dtype", dt, "--model", self.ckpt, "--tokens-from",
                     self.dump_path(self.ref_source), "--generate", str(self.G), "--dump-steps",
                     "--dump", self.dump_path(r["variant"])],
                    os.path.join(self.logs, f"{r['variant']}.log"), self.dl.cap(self.args.cuda_timeout)))
            if wrc is not None:   # the worker is gone: dumps it never wrote are failures
                for r in self.rows:
                    if r["source"] in WORKER_SOURCES and r["variant"] not in self.notes:
                        self.notes[r["variant"]] = {"variant": r["variant"], "ok": False,
                                                    "error": f"not written (worker exit {wrc}): see logs/hf_worker.log"}
            # compares
            if ref_ok:
                want = []
                for r in self.rows:
                    if r["role"] == "sweep" or not self.dump_ready(r["variant"]):
                        continue
                    for mode in table.MODES:
                        if (r["variant"], mode) not in submitted:
                            want.append((priority(r, mode), r["variant"], mode))
                for key, b in self.searches.items():
                    if key in sweep_inflight:
                        continue
                    i = b.next()
                    if i is None:
                        continue
                    bug, kind, mode = key
                    v = _sweep_variant(bug, self.grid[i], kind)
                    if (v, mode) in self.reports:      # compared already for another search
                        b.record(i, table.detected(self.by_variant[v]["expected"], self.reports[(v, mode)]))
                        continue
                    if self.notes.get(v) and not self.notes[v].get("ok"):
                        b.record(i, False)
                        self.events.append(f"sweep dump {v} failed; counted as not detected")
                        continue
                    if self.dump_ready(v) and (v, mode) not in submitted:
                        want.append((priority(self.by_variant[v], mode), v, mode))
                        sweep_inflight.add(key)
                for _, v, mode in sorted(want):
                    submitted.add((v, mode))
                    inflight[pool.submit(self.do_compare, v, mode)] = (v, mode)
            for fut in [f for f in inflight if f.done()]:
                v, mode = inflight.pop(fut)
                try:
                    rep = fut.result()
                except Exception as e:  # noqa: BLE001
                    rep = {"verdict": None, "first": None, "error": repr(e)}
                self.reports[(v, mode)] = rep
                self.say(f"compare {v} [{mode}]: {rep.get('verdict')} {rep.get('first') or ''} "
                         f"({rep.get('wall_s')} s)")
                for key in list(sweep_inflight):
                    bug, kind, m = key
                    if m == mode and self.by_variant[v].get("bug") == bug and self.by_variant[v]["kind"] == kind:
                        i = self.grid.index(self.by_variant[v]["eps"])
                        self.searches[key].record(i, table.detected(self.by_variant[v]["expected"], rep))
                        sweep_inflight.discard(key)
            # finished?
            worker_done = worker.poll() is not None
            ref_done = ref_bg is not None and ref_bg.poll() is not None
            cuda_done = not cuda_queue and cuda_bg is None
            sweeps_done = all(b.done or b.next() is None for b in self.searches.values()) and not sweep_inflight
            if worker_done and cuda_done and not inflight:
                if not ref_ok and (ref_done or ref_bg is None):
                    break
                pending = [r for r in self.rows if r["role"] != "sweep" and self.dump_ready(r["variant"])
                           and any((r["variant"], m) not in submitted for m in table.MODES)]
                if ref_ok and not pending and sweeps_done:
                    break
            if self.dl.left() < 6:
                self.events.append(f"deadline reached after {self.dl.elapsed():.0f} s: unfinished work killed")
                self.say("DEADLINE: stopping")
                break
            time.sleep(0.3)
        for bg in (worker, ref_bg, cuda_bg[1] if cuda_bg else None):
            if bg is not None:
                bg.kill()
        pool.shutdown(wait=False, cancel_futures=True)
        for fut, (v, mode) in inflight.items():
            self.reports.setdefault((v, mode), {"verdict": None, "first": None, "error": table.NOT_FINISHED})
        self.read_status()
        for r in self.rows:
            if r["variant"] not in self.notes and r["role"] != "sweep":
                self.notes[r["variant"]] = {"variant": r["variant"], "ok": False,
                                            "error": "dump not written (worker failed or deadline): see logs/hf_worker.log"}
        self.timings["total"] = round(time.time() - t0, 1)
        return self


def _sweep_variant(bug, eps, kind):
    from variants import sweep_variant
    return sweep_variant(bug, eps, kind)


def _tail(path, n=400):
    try:
        with open(path, errors="replace") as f:
            return f.read()[-n:].replace("\n", " | ")
    except OSError:
        return "(no log)"
