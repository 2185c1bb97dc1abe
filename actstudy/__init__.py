from actstudy.runtime_threads import quiet_waiting

quiet_waiting()  # before anything imports torch, which reads the OpenMP settings once
