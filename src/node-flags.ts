/**
 * The node (V8) options a Parley server process starts with: `npm start` (package.json), `bin/parley.js`
 * (its `#!` line) and the benchmarks' server children all pass these, and a test keeps them the same.
 * They cannot be set once node runs, nor through NODE_OPTIONS, so they sit on each command line.
 *
 * `--initial-old-space-size=128`: V8 runs no full (mark-compact) GC while the old generation is below
 * 128 MB. Without it, V8 sizes the next full GC from the live heap (about 1.5 times it), and a chat server
 * with a small live heap under steady traffic ran one every 3-5 s, each a 3-10 ms pause plus the backlog it
 * leaves (the push latency tail at 5,000 pushes/s, see bench/README.md). With it, the garbage of the old
 * generation is collected about every 40 s at that rate. Above 128 MB (a node holding many sessions) V8
 * sizes its GCs as usual. The cost: up to 128 MB of heap before the first full GC.
 */
export const SERVER_NODE_FLAGS: readonly string[] = ['--initial-old-space-size=128'];
