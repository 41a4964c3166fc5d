"""Controller-side work that makes every host-task cheaper (loaded without being enabled).

Ansible runs each host-task in a worker process forked from the controller. Two things a worker
does on every task were measured (cProfile of the lab's idempotent site.yml, ansible-core 2.19)
to take about half of its CPU, because the results die with the worker:

- Jinja's filter and test plugins: the first filter a worker uses loads every plugin file
  (ansible's filter/core.py alone is executed again in each worker). This callback loads them
  in the controller before each task is handed to the workers, so every fork inherits them.
- Template compilation: each worker compiles every template and expression it renders from
  source (parse, generate Python, compile). This callback keeps the compiled code objects in a
  cache directory shared by all workers and later runs, keyed by the template text and every
  setting that changes the generated code (delimiters, whitespace options, backslash escaping,
  the ansible-core, Jinja and Python versions). A cached entry also records each filter and
  test the code calls and how it is called; an entry whose filters changed is compiled again.

Host-tasks that never reach the node (a false `when`; includes, assert, set_fact, debug,
argument specs) need no worker at all: the controller runs their own TaskExecutor and queues
the result as a worker would (_in_controller).

GPUFLEET_JINJA_CACHE=off switches the template cache off; GPUFLEET_JINJA_CACHE_DIR moves it
(default: jinja-code in gpufleet's cache, $GPUFLEET_CACHE or ~/.cache/gpufleet).
GPUFLEET_CONTROLLER_TASKS=off sends every host-task to a worker again.
"""

from __future__ import annotations

import ast
import contextlib
import contextvars
import hashlib
import marshal
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import jinja2
from ansible.module_utils.ansible_release import __version__ as ANSIBLE_VERSION
from ansible.plugins.callback import CallbackBase
from ansible.plugins.loader import filter_loader, test_loader

DOCUMENTATION = """
name: gpufleet_controller
type: aggregate
short_description: gpufleet's controller caches (Jinja plugins before the forks, compiled templates)
description:
  - Loads Jinja filter and test plugins in the controller before each task, so that forked workers
    inherit them, and caches compiled templates on disk for every worker and later runs.
author: gpufleet
"""

try:  # the template engine of ansible-core 2.19 (constraints.txt pins it)
    from ansible._internal._templating import _jinja_bits
    from ansible._internal._templating._jinja_common import _TemplateConfig
    from jinja2.utils import _PassArg
except ImportError:  # another core: the plugin warm-up still applies, the cache does not
    _jinja_bits = None

_DEPENDENCY = re.compile(
    r"environment\.(filters|tests)\[('(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\")\]"
)
_EXPRESSION: contextvars.ContextVar[tuple | None] = contextvars.ContextVar(
    "gpufleet_expr", default=None
)
_MAX_ENTRIES = 20000


def _cache_dir() -> Path | None:
    if os.environ.get("GPUFLEET_JINJA_CACHE", "on").lower() in ("off", "0", "false", "no"):
        return None
    cache = os.environ.get("GPUFLEET_CACHE") or Path.home() / ".cache/gpufleet"
    root = os.environ.get("GPUFLEET_JINJA_CACHE_DIR") or Path(cache) / "jinja-code"
    path = Path(root)
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError:
        return None
    return path if os.access(path, os.W_OK) else None


def _dependencies(env, python_source: str) -> tuple:
    """The filters and tests the generated code calls, each with how Jinja passes it context."""
    found = sorted({(m[1], ast.literal_eval(m[2])) for m in _DEPENDENCY.finditer(python_source)})
    return tuple((kind, name, _pass_arg(env, kind, name)) for kind, name in found)


def _pass_arg(env, kind: str, name: str) -> str:
    try:
        func = (env.filters if kind == "filters" else env.tests).get(name)
    except Exception:  # a plugin that fails to load: compile again, and fail where Jinja does
        return "error"
    return "missing" if func is None else str(_PassArg.from_obj(func))


class _CodeCache:
    """Compiled template code on disk, one marshal file per key, written atomically."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.generated: dict[int, str] = {}
        self._prune()

    def _prune(self) -> None:
        try:
            entries = list(os.scandir(self.root))
            if len(entries) > _MAX_ENTRIES:
                entries.sort(key=lambda e: e.stat().st_mtime)
                for entry in entries[: len(entries) // 2]:
                    os.unlink(entry.path)
        except OSError:
            pass

    def key(self, env, parts: tuple) -> str:
        compile_ctx = _jinja_bits._TemplateCompileContext.current(optional=True)
        settings = (
            ANSIBLE_VERSION, jinja2.__version__, sys.version, type(env).__qualname__,
            tuple(getattr(env, n) for n in _jinja_bits._TEMPLATE_OVERRIDE_FIELD_NAMES),
            env.trim_blocks, env.lstrip_blocks, env.newline_sequence, env.keep_trailing_newline,
            env.optimized, repr(env.autoescape), tuple(sorted(env.extensions)), env.is_async,
            getattr(env.finalize, "__qualname__", repr(env.finalize)),
            None if compile_ctx is None else compile_ctx.escape_backslashes,
            _TemplateConfig.allow_embedded_templates,
        )  # fmt: skip
        digest = hashlib.sha256(repr(settings).encode())
        for part in parts:
            if isinstance(part, str):
                digest.update(b"\0" + str.encode(part, "utf-8", "surrogatepass"))
            else:
                digest.update(b"\1" + repr(part).encode())
        return digest.hexdigest()

    def load(self, env, key: str):
        try:
            code, deps = marshal.loads((self.root / key).read_bytes())
        except (OSError, ValueError, EOFError, TypeError):
            return None
        if any(_pass_arg(env, kind, name) != passed for kind, name, passed in deps):
            return None
        return code

    def store(self, env, key: str, code, python_source: str) -> None:
        try:
            data = marshal.dumps((code, _dependencies(env, python_source)))
            fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".tmp-")
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            os.replace(tmp, self.root / key)
        except (OSError, ValueError):
            pass


def _install_code_cache(cache: _CodeCache) -> None:
    env_class = _jinja_bits.AnsibleEnvironment
    if getattr(env_class, "_gpufleet_code_cache", None) is not None:
        return
    compile_original = env_class.compile
    compile_expression_original = env_class.compile_expression
    generate_original = env_class._generate

    def compile(self, source, name=None, filename=None, raw=False, defer_init=False):
        expression = _EXPRESSION.get()
        _EXPRESSION.set(None)
        if raw or self._debuggable_template_source:
            parts = None
        elif isinstance(source, str):
            parts = ("template", source, name, filename, defer_init)
        elif expression is not None:
            parts = ("expression", *expression, name, filename, defer_init)
        else:
            parts = None
        if parts is None:
            return compile_original(self, source, name, filename, raw, defer_init)
        key = cache.key(self, parts)
        code = cache.load(self, key)
        if code is None:
            code = compile_original(self, source, name, filename, raw, defer_init)
            python_source = cache.generated.pop(id(self), None)
            if code is not None and python_source is not None:
                cache.store(self, key, code, python_source)
        return code

    def _generate(self, source, name, filename, defer_init=False):
        python_source = generate_original(self, source, name, filename, defer_init)
        cache.generated[id(self)] = python_source
        return python_source

    def compile_expression(self, source, *args, **kwargs):
        token = _EXPRESSION.set((source, repr(args), repr(sorted(kwargs.items()))))
        try:
            return compile_expression_original(self, source, *args, **kwargs)
        finally:
            _EXPRESSION.reset(token)

    env_class.compile = compile
    env_class._generate = _generate
    env_class.compile_expression = compile_expression
    env_class._gpufleet_code_cache = cache


def _warm_jinja_plugins() -> None:
    """Load every filter and test plugin now, in the controller: forked workers inherit them.
    Cheap when nothing changed (the loaders keep them until a role adds a plugin folder)."""
    for loader in (filter_loader, test_loader):
        # a broken plugin fails where ansible reports it, in the worker
        with contextlib.suppress(Exception):
            loader._ensure_non_collection_wrappers()


def _share_mitogen_collection_dirs() -> None:
    """Mitogen (ansible_mitogen.planner) lists every installed collection, importing each and
    parsing its metadata, in every worker that runs a collection's module: about a hundred
    collections with the `ansible` package. List them once, here, for every fork."""
    planner = sys.modules.get("ansible_mitogen.planner")
    if planner is None or getattr(planner, "_gpufleet_collection_dirs", None) is not None:
        return
    import ansible.collections.list

    dirs = [path.decode("utf-8") for path in ansible.collections.list.list_collection_dirs()]

    def _load_collections(invocation):
        invocation._extra_sys_paths.update(dirs)

    planner._load_collections = _load_collections
    planner._gpufleet_collection_dirs = dirs


# Actions that never reach the node: the controller runs them whole (_in_controller).
_BUILTINS = ("include_tasks", "include_role", "assert", "fail", "debug", "set_fact",
             "validate_argument_spec")  # fmt: skip
_CONTROLLER_ACTIONS = frozenset(
    f"{prefix}{name}"
    for prefix in ("", "ansible.builtin.", "ansible.legacy.")
    for name in _BUILTINS
) | {"gpufleet_known_vars"}


# A task the controller took longer than this on goes to workers for its remaining hosts.
_SLOW_S = 0.05
_SLOW_TASKS: set[str] = set()


class _WouldRun(BaseException):
    """The task's conditional holds: it runs in a worker, as always. A BaseException, so that
    TaskExecutor, which turns every Exception into a failed result, lets it through."""


def _in_controller(strategy, host, task, task_vars, play_context) -> bool:
    """Run a host-task in the controller, without forking a worker, when that needs no node.

    Ansible forks one worker per host-task; in the lab's idempotent site.yml a worker that did
    nothing cost about 25 ms on two cores, the fork alone 8 ms of the controller's time. Two
    kinds of host-task never reach the node. The controller runs their own TaskExecutor on a
    copy of the task, with the same variables, so that the result is the worker's; it goes to
    the results queue as a worker's does:

    - a task whose `when` is false (about one host-task in five): the executor runs as far as
      the conditional and gives the skipped result (reason, false condition, no_log); when the
      conditional holds or raises, the worker runs the task as always;
    - the actions that run on the controller anyway (_CONTROLLER_ACTIONS: includes, assert,
      fail, debug, set_fact, argument specs, gpufleet_known_vars): the executor runs whole.
      Its connection object is created, as in a worker, and never connected.

    Tasks that loop or are delegated (their variables come from elsewhere), retry, run async
    or have a timeout go to a worker. So do a task's remaining hosts once the controller took
    longer than _SLOW_S on one of them (a slow lookup in a set_fact, say): workers run them in
    parallel, the controller one at a time.
    """
    if (task.loop is not None or task.loop_with or task.delegate_to is not None or task.until
            or task.async_val or task.timeout or task._uuid in _SLOW_TASKS):  # fmt: skip
        return False
    whole = task.action in _CONTROLLER_ACTIONS
    if not whole and not task.when:
        return False
    try:
        probe = task.copy(exclude_tasks=True)  # its parents, not their other tasks
        if not whole:
            holds = probe._resolve_conditional

            def _resolve_conditional(*args, **kwargs):
                if holds(*args, **kwargs):
                    raise _WouldRun()
                return False

            probe._resolve_conditional = _resolve_conditional
        executor = TaskExecutor(host, probe, dict(task_vars), play_context, strategy._loader,
                                get_plugin_loader_namespace(), strategy._final_q,
                                strategy._variable_manager)  # fmt: skip
        started = time.monotonic()
        try:
            with _task.TaskContext(probe):
                result = executor.run()
        finally:
            if time.monotonic() - started > _SLOW_S:
                _SLOW_TASKS.add(task._uuid)
    except (_WouldRun, Exception):  # the worker runs it, or reports the error as always
        return False
    if not whole and not result.get("skipped"):  # failed before the conditional: the worker
        return False  # reports it
    strategy._queued_task_cache[(host.name, task._uuid)] = {
        "host": host, "task": task, "task_vars": task_vars, "play_context": play_context,
    }  # fmt: skip
    strategy._tqm.send_callback("v2_runner_on_start", host, task)
    strategy._final_q.send_task_result(task_result._RawTaskResult(
        host=host, task=probe, return_data=result, task_fields=probe.dump_attrs(),
    ))  # fmt: skip
    strategy._pending_results += 1
    return True


def _install_in_controller() -> None:
    from ansible.plugins.strategy import StrategyBase

    queue_task = StrategyBase._queue_task
    if getattr(queue_task, "_gpufleet", False):
        return

    def _queue_task(self, host, task, task_vars, play_context):
        if not _in_controller(self, host, task, task_vars, play_context):
            queue_task(self, host, task, task_vars, play_context)

    _queue_task._gpufleet = True
    StrategyBase._queue_task = _queue_task


if _jinja_bits is not None and (_root := _cache_dir()) is not None:
    _install_code_cache(_CodeCache(_root))
try:  # the executor internals of ansible-core 2.19 (constraints.txt pins it)
    from ansible._internal import _task
    from ansible.executor import task_result
    from ansible.executor.task_executor import TaskExecutor
    from ansible.plugins.loader import get_plugin_loader_namespace
except ImportError:  # another core: every host-task goes to a worker, as Ansible does
    _task = None
if _task is not None and os.environ.get("GPUFLEET_CONTROLLER_TASKS", "on").lower() not in (
    "off", "0", "false", "no",
):  # fmt: skip
    _install_in_controller()


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "gpufleet_controller"
    CALLBACK_NEEDS_ENABLED = False

    def v2_playbook_on_task_start(self, task, is_conditional):
        _warm_jinja_plugins()
        _share_mitogen_collection_dirs()

    def v2_playbook_on_handler_task_start(self, task):
        _warm_jinja_plugins()

    def v2_playbook_on_cleanup_task_start(self, task):
        _warm_jinja_plugins()
