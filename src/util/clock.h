/* clock: the two clocks we use. Monotonic for durations and deadlines (never goes back),
 * wall for timestamps that leave the process (log lines, idempotency record ages). */
#ifndef CLOUDLESS_UTIL_CLOCK_H
#define CLOUDLESS_UTIL_CLOCK_H

#include <stdint.h>

uint64_t clock_mono_ms(void);
uint64_t clock_wall_ms(void);

#endif
