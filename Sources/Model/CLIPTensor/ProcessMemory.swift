import CCLIPKernels

/// Process-wide allocator settings for long numeric jobs.
package enum ProcessMemory {
    /// Keeps memory that tensors free inside the process for the next allocation instead of returning it to the
    /// kernel at once (glibc only; blocks up to 32 MiB, the heap trimmed only beyond 1 GiB free). Every training step
    /// and batch allocates the same activations again, and glibc's defaults turned each allocation into fresh zeroed
    /// pages: with this, 100 training steps of the default model take 1.4 % of the page faults and run about 1.4×
    /// faster, at the same peak memory. Memory freed after a peak stays with the process until it exits, as with
    /// PyTorch's caching allocator. The `clip` command calls it at start; a program using the library for training
    /// or bulk embedding may call it too. Returns whether the settings were applied (false where malloc is not glibc's).
    @discardableResult
    package static func retainFreedMemory() -> Bool { clip_retain_freed_memory() == 1 }
}
