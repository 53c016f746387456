"""The markdown tables of `bench/gpu/harness.py` (gpu-bench.md), from the report it writes as JSON."""

from __future__ import annotations


def fmt(v, digits: int = 3) -> str:
    """A table cell: numbers to `digits` significant figures (thousands separated), '-' for None."""
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        return f"{v:,.0f}" if abs(v) >= 10 ** (digits - 1) else f"{v:.{digits}g}"
    return str(v)


def percent(v: float | None) -> str | None:
    return None if v is None else f"{100 * v:.1f}%"


def table(header: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(c) for c in row) + " |" for row in rows]
    return lines + [""]


def status(r: dict) -> str:
    return "ok" if r["status"] == "ok" else f"{r['status']}: {r['reason']}"


def markdown(report: dict) -> str:
    m, s = report["machine"], report["settings"]
    by = {r["name"]: r for r in report["results"]}
    peak = report["peak_bf16_tflops"]
    gemm = by["gemm_bf16"]["tflops"]
    lines = [
        f"### {report['started']}: `{report['command']}`" + (" (dry run: tiny models on the CPU, not figures)"
                                                            if report["dry_run"] else ""),
        "",
        f"Device {m.get('device_name', '?')} ({fmt(m.get('memory_gib'))} GiB), torch {m.get('torch')} (CUDA "
        f"{m.get('cuda')}), transformers {m.get('transformers')}, Python {m.get('python')}; bf16 peak "
        f"{fmt(peak)} TFLOP/s ({report['peak_source'] or 'unknown: give --peak-tflops'}), measured bf16 GEMM "
        f"{fmt(gemm)} TFLOP/s; {report['wall_s']:.0f} s of a {report['budget_s']:.0f} s budget.",
        "",
        f"Training, bf16 autocast, {fmt(s['crop_s'])} s crops (every step: forward, backward, AdamW):",
        "",
    ]  # fmt: skip
    rows = []
    for name in ("pretrain_base_w2v", "pretrain_base_hf", "pretrain_large_w2v", "finetune_base_w2v"):
        r = by[name]
        mb = by.get(f"max_batch_base_{'hf' if r['impl'] == 'transformers' else 'w2v'}") if "base" in name else None
        largest = None
        if mb and name.startswith("pretrain") and mb["max_batch"] is not None:
            largest = f"{'≥' if mb['capped'] else ''}{mb['max_batch']}"
        rows.append([name, r["impl"], r["preset"], r["batch"], r["samples_per_s"], r["tokens_per_s"],
                     r["audio_s_per_s"], r["step_ms"], r["peak_mem_gib"], largest, r["tflops"],
                     percent(r["mfu"]), status(r)])  # fmt: skip
    lines += table(["measurement", "impl", "preset", "batch", "samples/s", "tokens/s", "audio s/s", "step ms",
                    "peak GiB", "largest batch", "TFLOP/s", "MFU", "status"], rows)  # fmt: skip
    lines += [f"`w2v transcribe` (batch {s['infer_batch']}, the audio folder x {s['audio_repeat']} per round; "
              "random models with peaked emissions):", ""]  # fmt: skip
    rows = [[n, by[n]["preset"], by[n]["decoding"], by[n]["audio_s_per_s"], by[n]["audio_s"], by[n]["model_s"],
             by[n]["decoder_s"], by[n]["jobs"], status(by[n])]
            for n in ("transcribe_base_greedy", "transcribe_base_lm", "transcribe_large_greedy", "transcribe_large_lm")]
    lines += table(["measurement", "preset", "decoding", "audio s/s", "audio s", "model s", "decoder s", "jobs",
                    "status"], rows)  # fmt: skip
    lines += ["torch.compile (BASE, fixed shapes):", ""]
    rows = [[n, by[n]["part"], by[n]["backend"], by[n]["compile_s"], by[n]["eager_per_s"], by[n]["compiled_per_s"],
             by[n]["unit"], by[n]["speedup"], status(by[n])] for n in ("compile_infer_base", "compile_train_base")]
    lines += table(["measurement", "part", "backend", "compile s", "eager", "compiled", "unit", "speedup", "status"],
                   rows)  # fmt: skip
    t = report["targets"]
    lines += ["Targets:", ""]
    rows = [
        ["BASE bf16 pretraining tokens/s", t["base_tokens_per_s"]["value"], f"≥ {t['base_tokens_per_s']['target']:,}",
         t["base_tokens_per_s"]["met"]],
        ["w2v / transformers (BASE tokens/s)", t["w2v_over_transformers"]["value"],
         f"≥ {t['w2v_over_transformers']['target']}", t["w2v_over_transformers"]["met"]],
        ["BASE MFU", percent(t["base_mfu"]["value"]), f"on the way to {t['base_mfu']['target']:.0%}",
         t["base_mfu"]["met"]],
        ["BASE tokens/s over NVIDIA's A100 figure", t["vs_nvidia_a100"]["value"],
         f"{t['vs_nvidia_a100']['reference_tokens_per_s']:,} tokens/s on one A100", None],
    ]  # fmt: skip
    lines += table(["target", "measured", "target value", "met"], rows)
    return "\n".join(lines)
