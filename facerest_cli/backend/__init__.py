"""Inference backends for every network the run executes: torch (eager, autocast) and OpenVINO (CPU).

Nothing heavy is imported here or by ``cpu`` (capabilities, precision choice), ``cache`` (compiled-model cache),
``network`` (plain descriptions), ``calls`` (per-architecture adapters and precision policy) or ``batch``
(default batch sizes); ``api.build_network`` imports torch or OpenVINO when it runs.

    from facerest_cli.backend.api import BackendOptions, build_network
    from facerest_cli.backend.cache import CompiledCache
    from facerest_cli.backend.calls import arch_call
    from facerest_cli.backend.network import ModelId
    from facerest_cli.backend.wrap import TensorCall

    spec = arch_call(entry.arch)
    net = build_network(lambda: TensorCall(load_model(entry, path), spec.fn, **spec.options), spec,
                        ModelId(name, entry.arch, sha256), BackendOptions("auto", "auto", "cpu", caps, max_batch=8),
                        cache=CompiledCache.for_weights_home(store.config.home))
    y = net(x)          # torch tensors or numpy in, float32 torch tensors out; net.info says how it was built
"""
