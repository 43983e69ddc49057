# Summarises `hyoracle compare --json` reports of the CUDA path: verdict, first divergence, rel-L2
# of the logits (prefill) and the largest rel-L2 over all compared float tensors (with its name).
import json, sys

print(f"| {'report':34s} | verdict | first divergence | logits rel-L2 | max rel-L2 (tensor) | top-1 | generate |")
for p in sys.argv[1:]:
    try:
        d = json.load(open(p))
    except Exception as e:
        print(f"| {p.split('/')[-1]:34s} | unreadable: {e}")
        continue
    fl = [t for t in d.get("tensors", []) if t.get("metrics") and isinstance(t["metrics"].get("rel_l2"), (int, float))
          and "topk_ids" not in t["name"]]
    lg = next((t["metrics"]["rel_l2"] for t in fl if t["name"] == "logits"), float("nan"))
    worst = max(fl, key=lambda t: t["metrics"]["rel_l2"], default=None)
    fd = d.get("first_divergence")
    fd = fd.get("name", fd) if isinstance(fd, dict) else fd
    L = d.get("logits") or {}
    print(f"| {p.split('/')[-1][:-5]:34s} | {d.get('verdict')} ({d.get('exit_code')}) | {str(fd)[:40]} | {lg:.3g} | "
          f"{worst['metrics']['rel_l2'] if worst else float('nan'):.3g} ({worst['name'] if worst else '-'}) | "
          f"{L.get('top1_agree')}/{L.get('positions')} | first token divergence {L.get('first_token_divergence')} |"
          + (f" error: {d['error']}" if d.get("error") else ""))
