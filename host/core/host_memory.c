/* host_memory.c — see host_memory.h. */
#include "core/host_memory.h"

#include <stdio.h>
#include <string.h>
#include <sys/resource.h>

#include "core/format.h"

/* "Key:   123 kB" of /proc/meminfo in bytes; 0 when absent. */
static uint64_t meminfo_bytes(const char *key) {
    FILE *f = fopen("/proc/meminfo", "r");
    if (!f) return 0;
    char line[256];
    uint64_t value = 0;
    size_t n = strlen(key);
    while (fgets(line, sizeof line, f)) {
        unsigned long long kb;
        if (strncmp(line, key, n) == 0 && line[n] == ':' && sscanf(line + n + 1, "%llu", &kb) == 1) {
            value = (uint64_t)kb * 1024;
            break;
        }
    }
    fclose(f);
    return value;
}

/* A number in a one-line file ("max" or unreadable: 0). */
static uint64_t file_number(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    unsigned long long v = 0;
    if (fscanf(f, "%llu", &v) != 1) v = 0;
    fclose(f);
    return (uint64_t)v;
}

/* What the cgroup still allows, or UINT64_MAX without a limit. */
static uint64_t cgroup_room(void) {
    uint64_t limit = file_number("/sys/fs/cgroup/memory.max"), used = file_number("/sys/fs/cgroup/memory.current");
    if (limit == 0) {
        limit = file_number("/sys/fs/cgroup/memory/memory.limit_in_bytes");
        used = file_number("/sys/fs/cgroup/memory/memory.usage_in_bytes");
    }
    if (limit == 0 || limit >= (1ull << 60)) return UINT64_MAX; /* "max", or v1's "no limit" (2^63 - page) */
    return limit > used ? limit - used : 0;
}

/* What the address-space limit (ulimit -v, RLIMIT_AS) still allows, or UINT64_MAX without one. */
static uint64_t address_space_room(void) {
    struct rlimit lim;
    if (getrlimit(RLIMIT_AS, &lim) != 0 || lim.rlim_cur == RLIM_INFINITY) return UINT64_MAX;
    uint64_t used = 0;
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    while (f && fgets(line, sizeof line, f)) {
        unsigned long long kb;
        if (sscanf(line, "VmSize: %llu kB", &kb) == 1) used = (uint64_t)kb * 1024;
    }
    if (f) fclose(f);
    return (uint64_t)lim.rlim_cur > used ? (uint64_t)lim.rlim_cur - used : 0;
}

uint64_t dk_host_memory_available(void) {
    uint64_t avail = meminfo_bytes("MemAvailable");
    uint64_t room = avail ? avail + meminfo_bytes("SwapFree") : UINT64_MAX;
    uint64_t cg = cgroup_room(), as = address_space_room();
    if (cg < room) room = cg;
    return as < room ? as : room;
}

int dk_host_memory_check(uint64_t need_bytes, const char *what, const char *hint, dk_err *err) {
    uint64_t avail = dk_host_memory_available();
    if (need_bytes <= avail) return 0;
    char need_s[DK_FMT_BUF], avail_s[DK_FMT_BUF];
    dk_format_bytes(need_s, (double)need_bytes);
    dk_format_bytes(avail_s, (double)avail);
    return dk_err_set(err, DK_EXIT_USAGE, "%s needs %s of host memory, more than the %s available to this job: %s",
                      what, need_s, avail_s, hint);
}
