/* format.h — human-readable numbers for logs and reports: durations, counts, byte sizes, rates.
 * Each writes into a caller buffer (at least 32 bytes) and returns it, so calls nest in one printf. */
#ifndef DK_FORMAT_H
#define DK_FORMAT_H

#include <stddef.h>

enum { DK_FMT_BUF = 32 };

/* 0.42 s -> "0.42s", 75 -> "1m15s", 7384 -> "2h03m", 200000 -> "2d07h"; negative/NaN/inf -> "?" */
char *dk_format_duration(char *buf, double seconds);
/* 950 -> "950", 12345 -> "12.3k", 4.5e6 -> "4.50M", 7e9 -> "7.00G" */
char *dk_format_count(char *buf, double count);
/* bytes with binary prefixes: 1536 -> "1.5 KiB", 6.4e9 -> "5.96 GiB" */
char *dk_format_bytes(char *buf, double bytes);

#endif
