"""`python -m tools.environment.serve_tool`: verl-tool's own tool server, serving our navigation tool.

The process registers `longvideo_nav` with verl-tool's registry (`tools.environment.verl_tool_glue.register`) and
then runs verl-tool's server code (`verl_tool.servers.tool_server`) in the same process, so no
installed file is edited. It serves from ONE backend process on purpose: verl-tool's multi-worker
router (`verl_tool.servers.serve`) starts plain `python -m verl_tool.servers.tool_server`
subprocesses that never see the registration and would answer every action through the `finish`
tool while reporting healthy. One process holds every trajectory's state, and its thread pool
serves concurrent trajectories (tests/benchmarks/bench_get_caption.py measures 256 of them).
Only video_qa's frame decoding leaves the process: the tool's pool of frame worker processes
(`tool.frame_workers`, see tools/environment/frame_workers.py), stopped when the server stops.

    LONGVIDEO_R1_TOOL_CONFIG=runs/.../tool.json python -m tools.environment.serve_tool --port 5000
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from tools.environment.tool_settings import ENV_VAR, ToolSettingsError, load_settings
from tools.environment.verl_tool_glue import TOOL_TYPE, register

logger = logging.getLogger("tools.environment.serve_tool")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The server's command line (the subset of verl-tool's tool_server options that apply)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--settings", help=f"tool settings JSON (default: ${ENV_VAR})")
    parser.add_argument("--workers-per-tool", type=int, default=32, help="threads inside one batch request")
    parser.add_argument("--max-concurrent-requests", type=int, default=1024)
    parser.add_argument("--thread-pool-size", type=int, default=256, help="threads serving concurrent requests")
    parser.add_argument("--request-timeout", type=float, default=None, help="seconds; none by default")
    parser.add_argument("--log-level", default="info")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Check the settings, register the tool, and run verl-tool's server until it is stopped."""
    args = parse_args(argv)
    logging.basicConfig(level=getattr(logging, args.log_level.upper(), logging.INFO))
    if args.settings:
        os.environ[ENV_VAR] = args.settings
    try:
        # Fail here, with the reason, rather than inside verl-tool, which logs a failed tool and serves on.
        load_settings()
    except ToolSettingsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        register()
        from verl_tool.servers.tool_server import AsyncToolServer, ServerConfig
    except ImportError as error:
        print(f"error: verl-tool is not installed ({error}); "
              "install the environment with `bash launch/install.sh` (see launch/README.md)",
              file=sys.stderr)
        return 2
    config = ServerConfig(host=args.host, port=args.port, workers_per_tool=args.workers_per_tool,
                          max_concurrent_requests=args.max_concurrent_requests,
                          request_timeout=args.request_timeout, thread_pool_size=args.thread_pool_size,
                          enable_hashing=False, log_level=args.log_level)
    server = AsyncToolServer(tool_types=(TOOL_TYPE, "finish"), config=config)
    if TOOL_TYPE not in server.tool_manager.tools:
        print(f"error: verl-tool could not build the {TOOL_TYPE} tool (its log above says why); not serving "
              "a server that would end every trajectory through the finish tool", file=sys.stderr)
        return 1
    close_with_server(server)
    logger.info("serving %s on %s:%d", TOOL_TYPE, args.host, args.port)
    try:
        server.start()
    finally:
        server.tool_manager.tools[TOOL_TYPE].close()
    return 0


def close_with_server(server) -> None:
    """Close our tool (its frame workers, its counters' last log line) when verl-tool's server shuts down.

    On SIGTERM or SIGINT uvicorn shuts the app down (verl-tool's lifespan calls `tool_manager.cleanup`)
    and then raises the signal again, so code after `server.start()` never runs: the close rides on
    that cleanup. Workers of a server killed outright exit by themselves (tools/environment/frame_workers.py).
    """
    manager = server.tool_manager
    tool = manager.tools[TOOL_TYPE]
    cleanup = manager.cleanup

    def cleanup_and_close() -> None:
        try:
            cleanup()
        finally:
            tool.close()

    manager.cleanup = cleanup_and_close


if __name__ == "__main__":
    sys.exit(main())
