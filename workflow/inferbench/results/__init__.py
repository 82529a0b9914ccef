"""What a run writes and how it is checked: the shard schema (schema), writing a shard (shard),
reading one back only if it is the cell its path names (shardcheck), the environment each cell
records (environment), and the verifiable archive (archive)."""
