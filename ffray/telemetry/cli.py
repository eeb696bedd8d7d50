"""``ffray telemetry record`` (``tail`` reads the store: ``ffray.analytics.tail``)."""

from __future__ import annotations

import sys

from ffray.errors import FFrayError


def run(args) -> int:
    import socket

    from ffray.settings import data_dir, telemetry_target

    root = data_dir(args.data_dir)
    target = telemetry_target(args.data_dir)
    if args.interval < 0.2:
        raise FFrayError("--interval must be >= 0.2 s")
    from ffray.telemetry.alerts import DEFAULT_RULES, parse_rules
    from ffray.telemetry.recorder import Recorder
    from ffray.telemetry.sampler import open_backend
    from ffray.telemetry.store import apply_retention

    rec = Recorder(target, socket.gethostname(), open_backend(), args.roll_seconds,
                   DEFAULT_RULES + parse_rules(args.alert), args.prometheus_port,
                   args.prometheus_host)
    print(f"recording {len(rec.sampler.devices)} GPU(s) + host every {args.interval:g} s to "
          f"{target}/telemetry" + (f"; metrics on {args.prometheus_host}:{rec.exporter.port}"
                                     if rec.exporter else ""), file=sys.stderr)
    try:
        rec.run(args.interval, args.duration)
    except KeyboardInterrupt:
        pass
    finally:
        rec.close()
        if "://" not in target:
            apply_retention(root / "telemetry", args.retention_days)
    print(f"{rec.samples} samples, {rec.alert_count} alerts, sampling took "
          f"{1000 * rec.busy_s / max(1, rec.samples):.2f} ms per sample", file=sys.stderr)
    return 0
