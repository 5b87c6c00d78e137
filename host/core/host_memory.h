/* host_memory.h — how much host memory a job may still use, and a check of a request against it.
 *
 * Why: a request that cannot fit (generate with --max-new-tokens 99999999999, a forward of 600k tokens with
 * logits at every position) must fail at once with what was asked, what it needs and which option helps,
 * not end in an allocation failure deep inside, or be killed by the OOM killer after minutes of swapping
 * (Linux overcommits: a huge malloc often succeeds and the process dies later when it touches the pages).
 * The limit is the smaller of the machine's MemAvailable + SwapFree (/proc/meminfo) and the job's cgroup
 * limit minus its usage (cgroup v2 memory.max / v1 memory.limit_in_bytes: what SLURM enforces), and of what
 * an address-space limit (ulimit -v) leaves. */
#ifndef DK_HOST_MEMORY_H
#define DK_HOST_MEMORY_H

#include <stdint.h>

#include "core/error.h"

/* Bytes this process can still allocate (an estimate); UINT64_MAX when nothing can be read. */
uint64_t dk_host_memory_available(void);

/* 0 when need_bytes fits in what is available; else -1 with err (code 2): "<what> needs X of host memory,
 * more than the Y available on this machine: <hint>". what and hint are phrases for people, e.g.
 * what = "--logits all for 600,000 tokens", hint = "use --logits last or none, or fewer tokens per file". */
int dk_host_memory_check(uint64_t need_bytes, const char *what, const char *hint, dk_err *err);

#endif
