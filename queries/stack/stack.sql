-- Whole stacks from the callsite prefix tree: each callsite with its path from the root, as a
-- list of frame names and as a folded string (the FlameGraph input format, root first).
-- Needs: callsite and frame (the stack tables of a CPU profile); join stack_sample on
-- (bundle, callsite_id) to get each sample's stack.

-- Each callsite's full stack, root first, as a list and as a folded string.
-- Semicolons inside frame names become colons in `folded`, which uses `;` as separator.
-- Callsites deeper than 4,096 frames (no recorder writes them) are left out.
--
-- Columns:
--   bundle       bundle
--   host         host
--   callsite_id  the callsite (`stack_sample.callsite_id` for leaves)
--   depth        distance from the root (root = 0)
--   frames       frame names from the root to this callsite
--   folded       frame names joined with `;`, root first (`main;run;leaf`)
--   leaf         name of this callsite's own frame
--   leaf_module  module of this callsite's own frame
--   leaf_kind    `kernel`, `user` or `unknown`
CREATE VIEW stack AS
WITH RECURSIVE paths AS (
  SELECT c.bundle, c.host, c.callsite_id, c.depth,
         make_array(f.name) AS frames,
         replace(f.name, ';', ':') AS folded,
         f.name AS leaf, f.module AS leaf_module, f.kind AS leaf_kind
  FROM callsite c JOIN frame f ON f.bundle = c.bundle AND f.frame_id = c.frame_id
  WHERE c.parent_id IS NULL
  UNION ALL
  SELECT c.bundle, c.host, c.callsite_id, c.depth,
         array_append(p.frames, f.name),
         p.folded || ';' || replace(f.name, ';', ':'),
         f.name, f.module, f.kind
  FROM callsite c
  JOIN paths p ON p.bundle = c.bundle AND p.callsite_id = c.parent_id
  JOIN frame f ON f.bundle = c.bundle AND f.frame_id = c.frame_id
  -- A hostile bundle can chain callsites 100,000 deep: paths stop at 4,096 frames (the depth
  -- `perfpack flamegraph` refuses past), so time and memory stay bounded.
  WHERE array_length(p.frames) < 4096
)
SELECT bundle, host, callsite_id, depth, frames, folded, leaf, leaf_module, leaf_kind
FROM paths
ORDER BY bundle, callsite_id;
