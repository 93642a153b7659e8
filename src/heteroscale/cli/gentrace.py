"""`heteroscale gen-trace`: write a synthetic Mooncake-format trace (see :mod:`heteroscale.sim.synth`)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from heteroscale.config.bundled import TRACES, data_path
from heteroscale.errors import ConfigError
from heteroscale.sim.synth import KINDS, PrefixReuseSpec, generate_prefix_trace
from heteroscale.sim.traces import read_trace

_DEFAULTS = PrefixReuseSpec()


def add_gen_trace_parser(sub: Any) -> None:
    gen = sub.add_parser(
        "gen-trace",
        help="write a Mooncake-format trace with shared prefixes on a request trace's arrivals and lengths",
    )
    gen.add_argument("--kind", choices=KINDS, default=KINDS[0], help="the generator (default: prefix-reuse)")
    gen.add_argument(
        "--arrivals",
        default="azure-code",
        help="bundled trace name or trace file giving arrivals, own prompt and output lengths (default: azure-code)",
    )
    gen.add_argument("--out", type=Path, required=True, help="the JSONL file to write")
    gen.add_argument("--hit-ratio", type=float, default=_DEFAULTS.hit_ratio, help="target token hit ratio (0.5)")
    gen.add_argument("--prefixes", type=int, default=_DEFAULTS.prefixes, help="shared prefixes (200)")
    gen.add_argument("--zipf-s", type=float, default=_DEFAULTS.zipf_s, help="Zipf exponent of their popularity (1.0)")
    gen.add_argument(
        "--shared-fraction", type=float, default=_DEFAULTS.shared_fraction, help="requests with a prefix (0.9)"
    )
    gen.add_argument(
        "--length-sigma", type=float, default=_DEFAULTS.length_sigma, help="log-normal σ of prefix lengths (1.0)"
    )
    gen.add_argument(
        "--block-tokens",
        type=int,
        default=_DEFAULTS.block_tokens,
        help="tokens per block (512; the simulator reads Mooncake traces in 512-token blocks)",
    )
    gen.add_argument("--seed", type=int, default=_DEFAULTS.seed)
    gen.add_argument("--json", action="store_true", help="print exactly one JSON object on stdout")


def gen_trace(args: argparse.Namespace) -> dict[str, Any]:
    """Generate and write the trace; return what was written and its hit ratios."""
    spec = PrefixReuseSpec(
        hit_ratio=args.hit_ratio,
        prefixes=args.prefixes,
        zipf_s=args.zipf_s,
        shared_fraction=args.shared_fraction,
        length_sigma=args.length_sigma,
        block_tokens=args.block_tokens,
        seed=args.seed,
    )
    source_path = data_path("traces", TRACES[args.arrivals]) if args.arrivals in TRACES else Path(args.arrivals)
    source = read_trace(source_path)
    trace = generate_prefix_trace(source, spec)
    out: Path = args.out
    if not out.parent.is_dir():
        raise ConfigError(f"--out {out}: no such directory {out.parent}")
    with out.open("w", encoding="utf-8", newline="\n") as handle:
        handle.writelines(trace.jsonl_lines())
    return {
        "kind": args.kind,
        "out": str(out),
        "arrivals": args.arrivals,
        "requests": len(trace.input_tokens),
        "mean_input_tokens": round(float(trace.input_tokens.mean()), 1),
        "mean_output_tokens": round(float(trace.output_tokens.mean()), 1),
        "prefix_blocks_mean": round(float(trace.prefix_blocks.mean()), 2),
        "hit_ratio_target": spec.hit_ratio,
        "hit_ratio_expected": round(trace.expected_hit_ratio, 4),
        "hit_ratio": round(trace.hit_ratio, 4),
        "bytes": out.stat().st_size,
    }


def gen_trace_text(result: dict[str, Any]) -> str:
    return (
        f"wrote {result['out']}: {result['requests']} requests on {result['arrivals']} arrivals, "
        f"{result['bytes']:,} bytes\n"
        f"  mean input {result['mean_input_tokens']:,} tokens, mean output {result['mean_output_tokens']:,}, "
        f"mean prefix {result['prefix_blocks_mean']} blocks\n"
        f"  token hit ratio (unbounded cache): {result['hit_ratio']:.4f} "
        f"(target {result['hit_ratio_target']:g}, expected {result['hit_ratio_expected']:.4f})"
    )
