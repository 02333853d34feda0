"""The Keras 3, tf_keras and optax snippets (tools/snippet.py, keras_snippet.py, optax_snippet.py), checked by running
them: every table of each adapter's fidelity battery (linear and network) is written as code, each snippet runs in a
fresh interpreter (one per Keras backend and dtype, since Keras reads KERAS_BACKEND and JAX its x64 flag once), and
what it built is read back: wdparity.describe() equals the adapter's describe() of the table where describe() reads
it, the objects themselves (get_config(), exclusions, regularizers, variable names, optax updates) everywhere, and a
sample trains step for step exactly as the adapter's own train() does (bitwise in float32, 1e-15 in float64)."""

from __future__ import annotations

import functools
import json
import re

import numpy as np
import pytest
from snippets import run_snippets

from wdparity.judge import fidelity, network_battery
from wdparity.run import registry
from wdparity.run.backend import Inexpressible
from wdparity.run.cases import load_run
from wdparity.spec.models import Task
from wdparity.spec.network import tensor_scope
from wdparity.tools.snippet import RUN_LEVEL, python_snippet
from wdparity_backends import keras_network
from wdparity_backends.keras_snippet import leftover
from wdparity_backends.keras_vocab import CLIP, KERAS_NAME, KerasRun
from wdparity_backends.keras_vocab import OWN as K3_OWN
from wdparity_backends.tf_keras_backend import TF_NAME
from wdparity_backends.tf_keras_vocab import OWN as TF_OWN

KERAS_BACKENDS = ("tensorflow", "jax", "torch")


def battery(name: str) -> dict[str, tuple[dict, dict]]:
    return {**fidelity.native_battery(name)[0], **network_battery.network_battery(name)[0]}


@functools.lru_cache(maxsize=None)
def snippets(name: str, dtype: str = "") -> tuple[dict, dict]:
    """(case -> (task dict, table, code with the case appended as JSON), case -> Inexpressible reason)."""
    codes, refused = {}, {}
    for case, (task, table) in battery(name).items():
        task = {**task, **({"dtype": dtype} if dtype else {})}
        t = Task.model_validate(task)
        try:
            code = python_snippet(table, t)
        except Inexpressible as exc:
            refused[case] = str(exc)
            continue
        trailer = json.dumps({"task": task, "run": table, "linear": t.model.linear})
        codes[case] = (task, table, code + f"\n__case__ = {trailer!r}\n")
    return codes, refused


def run_all(codes: dict, probe: str, backend: str, kb: str = "tensorflow") -> list[tuple[str, dict, dict, dict]]:
    """(case, task, table, probe value) of each snippet, run in one process: x64 off (a float64 snippet turns it on
    itself), KERAS_BACKEND the group's."""
    env = {"JAX_ENABLE_X64": "0", "TF_CPP_MIN_LOG_LEVEL": "3", **({"KERAS_BACKEND": kb} if backend == "keras" else {})}
    results = run_snippets([c for _, _, c in codes.values()], probe, env=env)
    for case, res in zip(codes, results):
        assert res["ok"], (case, res.get("error"), res.get("traceback"))
    return [(case, task, table, res["value"]) for (case, (task, table, _)), res in zip(codes.items(), results)]


# ---------------------------------------------------------------- every battery table is written as code
@pytest.mark.parametrize("name", ["keras", "tf_keras", "optax"])
def test_every_battery_table_is_written_or_refused_by_key(name):
    codes, refused = snippets(name)
    for case, reason in refused.items():
        assert any(k in reason for k in [*battery(name)[case][1], *RUN_LEVEL]), (case, reason)
    print(f"{name}: {len(codes)} tables rendered, {len(refused)} inexpressible")
    assert len(codes) + len(refused) == len(battery(name)) and not refused   # every table today


def test_a_key_the_snippet_cannot_write_is_refused_by_name():
    with pytest.raises(Inexpressible, match=r"\['keras_backend', 'momentum'\]"):
        leftover(KerasRun(optimizer="SGD", momentum=0.9), {"optimizer"})
    task = Task(schedule={"kind": "inverse_time", "rate": 0.1})
    for table in ({"backend": "keras", "optimizer": "SGD", "learning_rate": 0.1},
                  {"backend": "optax", "optimizer": "sgd", "learning_rate": 0.1}):
        with pytest.raises(Inexpressible, match="schedule"):
            python_snippet(table, task)


# ---------------------------------------------------------------- Keras 3 and tf_keras: describe() and the objects
OBJECTS_PROBE = '''import json
import numpy as np
import wdparity

def plain(v):   # JSON: NumPy scalars by item(), anything else by repr
    return json.loads(json.dumps(v, default=lambda x: x.item() if isinstance(x, np.generic) else repr(x)))

case = json.loads(ns["__case__"])
opt, model, k3 = ns["optimizer"], ns["model"], case["run"]["backend"] == "keras"
if k3:
    import keras as m
    pattern = getattr(opt, "_exclude_from_weight_decay_pattern", None)
    exclude = None if pattern is None else pattern.pattern
else:
    import tf_keras as m
    names = getattr(opt, "_exclude_from_weight_decay_names", None)
    exclude = None if names is None else list(names)
keys = ("kernel_regularizer", "bias_regularizer", "gamma_regularizer", "beta_regularizer")
out = {"config": plain(opt.get_config()), "floatx": m.backend.floatx(), "exclude": exclude,
       "backend": m.config.backend() if k3 else None, "variables": [v.name for v in model.trainable_variables],
       "attrs": {k: plain(getattr(opt, k)) for k in case["run"] if hasattr(opt, k)},   # what get_config() leaves out
       "layers": {la.name: {k: getattr(la, k).get_config() if getattr(la, k) is not None else None
                            for k in keys if hasattr(la, k)} for la in model.layers if la.weights}}
if k3 and case["linear"]:   # describe() reads Keras 3 optimizers with the linear model
    d = wdparity.describe(opt, model=model)
    out["semantics"] = d.semantics.neutral()
    out["unsupported"] = [[u.key, str(u.reason)] for u in d.unsupported]
return out'''


def regularizers_of(config, task: Task, flavour: str) -> dict:
    """layer name -> {keyword: {l1, l2}} the adapter builds (keras_network.build_model; linear: under "dense");
    tf_keras keeps the factors as cast_to_floatx leaves them (tf_keras/src/regularizers.py)."""
    def cfg(r):
        r32 = (lambda x: float(np.asarray(x, task.dtype))) if flavour == "tf_keras" else float
        return {"l1": r32(r.l1), "l2": r32(r.l2)}

    if task.model.linear:
        regs = {"kernel_regularizer": config.kernel_regularizer, "bias_regularizer": config.bias_regularizer}
        return {"dense": {k: cfg(r) for k, r in regs.items() if r is not None}}
    regs = keras_network.regularizers(config.layers, config.kernel_regularizer, config.bias_regularizer, task.tensors)
    return {name: {k: cfg(regs[t]) for k, t in keys.items() if t in regs}
            for name, (_, keys) in keras_network.native_layers(task.tensors).items()}


def check_keras_objects(flavour: str, task_dict: dict, table: dict, got: dict) -> None:
    """get_config(), the exclusions, the regularizers and the variables' names against the table."""
    t = Task.model_validate(task_dict)
    with tensor_scope(t.tensors):
        config = registry.get(flavour).parse({k: v for k, v in table.items() if k != "backend"})
    k3, lr0 = flavour == "keras", config.get("learning_rate")   # (as given, else the installed default)
    assert got["backend"] == (config.keras_backend if k3 else None)
    keys = ("weight_decay", *CLIP, *K3_OWN[config.optimizer]) if k3 else (*CLIP, *TF_OWN[config.optimizer])
    names, legacy = (KERAS_NAME, False) if k3 else (TF_NAME, config.legacy)
    assert got["floatx"] == t.dtype
    cfg = got["config"]
    for key in [k for k in keys if getattr(config, k) is not None]:
        spelled = "decay" if key == "schedule_decay" else key   # legacy.Nadam stores schedule_decay as `decay`
        want, have = getattr(config, key), cfg[spelled] if spelled in cfg else got["attrs"][key]
        assert have == want or (legacy and np.float32(have) == np.float32(want)), (key, want, have)
    lr, s = cfg["learning_rate"], t.schedule.model_dump()
    if s["kind"] == "constant":
        assert np.float32(lr) == np.float32(lr0)
    else:
        kind, want = {"step": ("ExponentialDecay", {"decay_steps": s.get("every"), "decay_rate": s.get("factor"),
                                                    "staircase": True}),
                      "cosine": ("CosineDecay", {"decay_steps": s.get("total"), "alpha": s.get("floor")}),
                      "inverse_time": ("InverseTimeDecay", {"decay_steps": 1, "decay_rate": s.get("rate")})}[s["kind"]]
        assert lr["class_name"] == kind and np.float32(lr["config"]["initial_learning_rate"]) == np.float32(lr0)
        assert {k: lr["config"][k] for k in want} == pytest.approx(want, rel=1e-7)
    layers = got["layers"] if not t.model.linear else {"dense": next(iter(got["layers"].values()))}
    assert {n: {k: v for k, v in r.items() if v is not None} for n, r in layers.items()} == \
        regularizers_of(config, t, flavour)
    excluded = config.exclude_from_weight_decay
    if t.model.linear:
        excluded = None if excluded is None else [names[k] for k in excluded]
    else:   # the snippet's variables carry the names the adapter's patterns are matched against
        assert got["variables"] == [n for _, n in keras_network.native_names(t.tensors, flavour).values()]
    if flavour == "keras":   # Keras 3 joins the names into one pattern: "|".join(set(var_names))
        got["exclude"] = None if got["exclude"] is None else sorted(got["exclude"].split("|"))
        excluded = None if excluded is None else sorted(set(excluded))
    assert got["exclude"] == excluded


@pytest.mark.parametrize("kb", KERAS_BACKENDS)
def test_keras_snippets_describe_as_their_tables(kb):
    codes, _ = snippets("keras")
    mine = {c: v for c, v in codes.items() if v[1].get("keras_backend", "tensorflow") == kb}
    described = 0
    for case, task, table, got in run_all(mine, OBJECTS_PROBE, "keras", kb):
        check_keras_objects("keras", task, table, got)
        if "semantics" in got and Task.model_validate(task).schedule.kind == "constant":
            assert got["unsupported"] == [], (case, got["unsupported"])
            assert got["semantics"] == load_run("x", dict(table), Task(), "test", {}).semantics.neutral(), case
            described += 1
    print(f"keras/{kb}: {len(mine)} snippets probed, {described} read back by describe() equal to the table's")
    assert described > 0


def test_tf_keras_snippets_build_their_tables():
    codes, _ = snippets("tf_keras")
    for case, task, table, got in run_all(codes, OBJECTS_PROBE, "tf_keras"):
        check_keras_objects("tf_keras", task, table, got)
    print(f"tf_keras: {len(codes)} snippets probed by get_config(), exclusions, regularizers")


# ---------------------------------------------------------------- optax: describe() and the updates
CASE = '''import json
import numpy as np
import wdparity
from wdparity.engine import network as net_mod
from wdparity.engine.data import batches, make_data
from wdparity.run import registry
from wdparity.run.cases import load_run
from wdparity.spec.models import Task

case = json.loads(ns["__case__"])
run = load_run("snippet", dict(case["run"]), Task.model_validate(case["task"]), "snippet", {})
data, dtype = make_data(run.task.model_dump()), run.dtype
job = {"task": run.task.model_dump(), "run": run.config.model_dump(), "semantics": run.semantics.neutral(),
       "dtype": dtype}
rows = batches(data["order"], run.task.batch_size)
'''

OPTAX_PROBE = CASE + '''import jax
import optax

s = registry.get("optax").build(job, data)   # the adapter's own chain and loss, read out of its jitted step
cells = dict(zip(s.step.__wrapped__.__code__.co_freevars, s.step.__wrapped__.__closure__))
tx, loss_fn, mine = cells["tx"].cell_contents, cells["loss_fn"].cell_contents, ns["optimizer"]

def equal(a, b):
    return [bool(np.array_equal(np.asarray(x), np.asarray(z))) for x, z in zip(jax.tree.leaves(a), jax.tree.leaves(b))]

out = {"tree": jax.tree.structure(ns["params"]) == jax.tree.structure(s.params),
       "leaves": [[list(a.shape), str(a.dtype)] == [list(b.shape), str(b.dtype)]
                  for a, b in zip(jax.tree.leaves(ns["params"]), jax.tree.leaves(s.params))], "same": []}
a_state, b_state, p = tx.init(s.params), mine.init(s.params), s.params
for idx in rows[:3]:   # eager: the two objects, step for step
    g, g_mine = jax.grad(loss_fn)(p, s.X[idx], s.y[idx]), jax.grad(ns["loss_fn"])(p, s.X[idx], s.y[idx])
    (u, a_state), (v, b_state) = tx.update(g, a_state, p), mine.update(g, b_state, p)
    out["same"].append(equal(u, v) + equal(g, g_mine))
    p = optax.apply_updates(p, u)
if case["linear"] and "chain" not in case["run"] and run.task.schedule.kind == "constant":   # what describe() reads
    d = wdparity.describe(mine, params=s.params)
    out["semantics"] = d.semantics.neutral()
    out["unsupported"] = [[u.key, str(u.reason)] for u in d.unsupported]
return out'''


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_optax_snippets_update_as_the_adapter_and_describe_as_their_tables(dtype):
    codes, _ = snippets("optax", dtype)
    described = 0
    for case, task, table, got in run_all(codes, OPTAX_PROBE, "optax"):
        assert got["tree"] and all(got["leaves"]), case
        assert got["same"] and all(all(step) for step in got["same"]), (case, got["same"])
        scheduled_decay = any(isinstance(table.get(k), dict) for k in ("weight_decay", "weight_decay_rate"))
        if "semantics" in got and not scheduled_decay:
            assert got["unsupported"] == [], (case, got["unsupported"])
            bare = {k: v for k, v in table.items() if k != "penalty"}   # the penalty is loss_fn's, not the optimizer's
            # (describe() of a live object reads it for Task(), a float32 task: its dtype is not the optimizer's)
            assert got["semantics"] == load_run("x", bare, Task(), "test", {}).semantics.neutral(), case
            described += 1
    print(f"optax/{dtype}: {len(codes)} snippets updated as the adapter's chain; {described} read back by describe()")
    assert described > 0


# ---------------------------------------------------------------- a sample trains as the adapter's train()
TRAIN_PROBE = CASE + '''network, names = "model_json" in data, net_mod.names_of(data)
X, y = np.asarray(data["X_train"], dtype), np.asarray(data["y_train"], dtype).reshape(-1, 1)
if run.backend == "optax":
    import jax
    import optax
    from wdparity_backends import optax_network as onet
    from wdparity_backends.optax_jax import dense_params
    params = onet.init_params(jax.numpy, data, dtype) if network else dense_params(jax.numpy, data, dtype)
    assert jax.tree.structure(params) == jax.tree.structure(ns["params"])
    tx, loss_fn = ns["optimizer"], ns["loss_fn"]

    @jax.jit
    def step(p, st, X, y):
        u, st = tx.update(jax.grad(loss_fn)(p, X, y), st, p)
        return optax.apply_updates(p, u), st

    def flat():
        return onet.read(params, names) if network else {n: np.asarray(params[n]) for n in names}
    st, traj = tx.init(params), [flat()]
    for idx in rows:
        params, st = step(params, st, X[idx], y[idx])
        traj.append(flat())
else:
    start = net_mod.start(data) if network else {"weight": data["w0"], "bias": data["b0"]}
    model = ns["model"]
    variables = list(model.trainable_variables)
    for name, v in zip(names, variables):
        v.assign(np.asarray(start[name], dtype).reshape(tuple(v.shape)))
    if run.backend == "keras":
        import keras
        to_numpy = keras.ops.convert_to_numpy
    else:
        def to_numpy(v):
            return v.numpy()
    traj = [{n: np.array(to_numpy(v)) for n, v in zip(names, variables)}]
    for idx in rows:
        model.train_on_batch(X[idx], y[idx])
        traj.append({n: np.array(to_numpy(v)) for n, v in zip(names, variables)})
ref = registry.get(run.backend).train(job, data)
worst, bitwise, steps = 0.0, True, 0
for n in names:
    r = np.asarray(ref[n], np.float64).reshape(len(ref[n]), -1)
    ok = np.all(np.isfinite(r), axis=1)   # (the stop rule leaves NaN rows after a blow-up)
    m, r = np.stack([np.asarray(t[n], np.float64).reshape(-1) for t in traj])[:len(r)][ok], r[ok]
    steps, bitwise = len(r), bitwise and bool(np.array_equal(m, r))
    worst = max(worst, float(np.max(np.abs(m - r) / np.maximum(np.abs(r), 1e-300))))
return {"max_rel_err": worst, "bitwise": bitwise, "steps": steps}'''

FEATURES = [   # the sample: the first table of a group with each of these
    lambda t, r: "exclude_from_weight_decay" in r or "mask" in json.dumps(r),
    lambda t, r: any(k in r for k in ("clipnorm", "clipvalue", "global_clipnorm")) or "clip" in json.dumps(r),
    lambda t, r: t.get("schedule", {}).get("kind") == "step" and ("regularizer" in json.dumps(r) or "penalty" in r),
    lambda t, r: t.get("schedule", {}).get("kind") == "cosine" and t.get("loss") == "mse",
    lambda t, r: "model" in t and ("layers" in r or "mask" in json.dumps(r) or "exclude" in json.dumps(r)),
    lambda t, r: r.get("optimizer") in ("Adafactor", "Lamb", "Nadam", "adafactor", "lamb", "legacy.Nadam"),
]
GROUPS = [("keras", kb, dtype) for kb in KERAS_BACKENDS for dtype in ("float32", "float64")] + \
         [(name, None, dtype) for name in ("tf_keras", "optax") for dtype in ("float32", "float64")]


@pytest.mark.parametrize("name,kb,dtype", GROUPS)
def test_a_sample_of_snippets_trains_as_the_adapter(name, kb, dtype):
    codes, _ = snippets(name, dtype)
    mine = {c: v for c, v in codes.items() if kb is None or v[1].get("keras_backend", "tensorflow") == kb}
    chosen = {}
    for feature in FEATURES:
        case = next((c for c, (t, r, _) in mine.items() if feature(t, r) and c not in chosen), None)
        chosen.update({case: mine[case]} if case is not None else {})
    assert len(chosen) >= 3, sorted(chosen)
    results = run_all(chosen, TRAIN_PROBE, name, kb or "tensorflow")
    for case, _, _, got in results:   # bitwise in float32, 1e-15 in float64
        assert got["steps"] > 1 and (got["bitwise"] if dtype == "float32" else got["max_rel_err"] <= 1e-15), (case, got)
    print(f"{name}/{kb or '-'}/{dtype}: {len(chosen)} snippets trained as the adapter: " + ", ".join(
        f"{c} {got['steps']} steps max rel err {got['max_rel_err']:.1e}" for c, _, _, got in results))


def test_the_snippets_are_python_a_reader_can_follow():
    """The table's numbers appear as written (floats by repr), the optax alias is the form describe() reads, and the
    Keras backend is set before keras is imported."""
    codes, _ = snippets("optax")
    alias = next(code for _, table, code in codes.values() if table.get("optimizer") == "adamw")
    assert re.search(r"optax\.inject_hyperparams\(optax\.adamw, static_args=\(.*\)\)\(\s*learning_rate=", alias)
    keras_codes, _ = snippets("keras")
    task, table, code = next(v for v in keras_codes.values() if v[1].get("keras_backend") == "jax"
                             and "learning_rate" in v[1])
    assert code.index('os.environ.setdefault("KERAS_BACKEND", \'jax\')') < code.index("\nimport keras\n")
    assert f"learning_rate={float(table['learning_rate'])!r}" in code or f"({float(table['learning_rate'])!r}," in code


INJECT_FACTS = '''import jax
import jax.numpy as jnp
import numpy as np

rng = np.random.default_rng(0)
params = {"weight": jnp.asarray(rng.standard_normal((4, 1)), jnp.float32), "bias": jnp.zeros((1,), jnp.float32)}
grads = [jax.tree.map(lambda x: jnp.asarray(rng.standard_normal(x.shape), jnp.float32), params) for _ in range(5)]
'''

INJECT_PROBE = '''import numpy as np
import jax
import optax

def train(tx):
    state, p = tx.init(ns["params"]), ns["params"]
    for g in ns["grads"]:
        u, state = tx.update(g, state, p)
        p = optax.apply_updates(p, u)
    return p

def gap(a, b):
    return max(float(np.max(np.abs(np.asarray(x) - y))) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))

inject, keys = optax.inject_hyperparams, ("b1", "b2", "eps", "eps_root", "mu_dtype", "nesterov")
plain = train(optax.adam(0.01))
out = {"injected": gap(plain, train(inject(optax.adam)(learning_rate=0.01))),
       "static": gap(plain, train(inject(optax.adam, static_args=keys)(learning_rate=0.01))),
       "dtype": str(inject(optax.adam)(learning_rate=0.01).init(ns["params"]).hyperparams["b1"].dtype),
       "partials": [[type(f).__name__, f.func.__name__, f.keywords] for f in (optax.nadam, optax.nadamw)]}
mask = lambda p: jax.tree.map(lambda x: x.ndim > 1, p)
wd = {"b1": 0.9, "b2": 0.999, "eps": 1e-8, "weight_decay": 0.5}   # (static: only the mask's handling differs)
taken = train(inject(optax.adamw, static_args=tuple(wd))(learning_rate=0.01, mask=mask, **wd))
out["callable_mask"] = gap(train(optax.adamw(0.01, mask=mask, **wd)), taken)
out["callable_mask_as_none"] = gap(train(optax.adamw(0.01, weight_decay=0.0)), taken)
out["callable_mask_static"] = gap(train(optax.adamw(0.01, mask=mask, **wd)), train(inject(
    optax.adamw, static_args=(*wd, "eps_root", "mu_dtype", "mask", "nesterov"))(learning_rate=0.01, mask=mask, **wd)))
return out'''


def test_inject_hyperparams_casts_the_numbers_it_injects_to_the_params_dtype():
    """Why the optax snippet makes every keyword but learning_rate static, defaults included, and spells nadam(w) out:
    inject_hyperparams converts each numeric keyword it binds (a default too) to an array of the params' dtype, which
    in float32 changes Adam's update; static ones reach the alias as Python floats (bitwise the plain alias); a
    callable mask not named static is taken for a schedule (called on the step count, it decays nothing); optax.nadam
    and nadamw are functools.partial objects."""
    (facts,) = [v for _, _, _, v in run_all({"facts": ({}, {}, INJECT_FACTS)}, INJECT_PROBE, "optax")]
    assert facts["dtype"] == "float32" and facts["injected"] > 1e-8 and facts["static"] == 0.0, facts
    assert facts["partials"] == [["partial", "adam", {"nesterov": True}], ["partial", "adamw", {"nesterov": True}]]
    assert facts["callable_mask"] > 1e-4 and facts["callable_mask_as_none"] == facts["callable_mask_static"] == 0.0
    print(f"optax: injected adam {facts['injected']:.2e} off the plain alias after 5 float32 steps, static 0; a "
          f"callable mask not static: {facts['callable_mask']:.2e} off the masked decay, 0 off no decay")
