"""What a process runs with: the device and its threads, the Slurm job, interrupts, progress."""
