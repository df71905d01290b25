"""`resx bench`: the fair comparison of the runtimes on one model, as a typed pipeline whose arrows go one way:

    config    BenchConfig: one dataclass per concern, presets, --config FILE.toml (what to measure)
    plan      a pure function of the config: paths, scenarios, the language map's graphs, an estimate
    prepare   the files each model's paths open (exports, AOTInductor packages), timing nothing
    rounds    adaptive rounds of fresh worker processes per path (gate, inference, serving)
    training  the training step, through `resx train` in a fresh process per round
    counts    instructions per call under valgrind's callgrind, and where they go
    run       plan -> results: the whole benchmark
    results   the typed results, and results.json (one codec, resx.codec)
    analysis  what the results say (ratios, noise floor, what to ship, epochs, two runs compared);
              language: where the language matters (the map)
    report    formats them: report.md, results.csv, plots (`resx report` re-renders, `resx compare`)

and beside them: registry (the runtimes), protocol (the worker protocol, mirrored by resnet_cpp/protocol.h),
runners (the bench's side of it), workers (a Python worker's side), gate, monitor, serving (LoadGen).
This package imports nothing itself: a worker process imports only the runtime it serves.
"""
