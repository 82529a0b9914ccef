"""What a run writes and how it is checked: the shard schema (schema), writing a shard (shard),
reading one back only if it is the cell its path names (shardcheck), the environment each cell
records (environment), and the verifiable archive (archive).

Named `records`, not `results`: `results/` is where a sweep writes, and tools that skip that
folder by name must not skip this code."""
