/* Cortex-M4F reset: turn the FPU on (the policy is compiled for hard float), then newlib's
 * semihosting start-up (`_start`: zeroes .bss, calls main, exits through the host). */
#include <stdint.h>

extern uint32_t __stack_top;
extern void _start(void);

void reset_handler(void) {
    volatile uint32_t *cpacr = (volatile uint32_t *)0xE000ED88u;
    *cpacr |= 0xFu << 20; /* CP10, CP11: full access */
    __asm volatile("dsb\n isb");
    _start();
    for (;;) {
    }
}

static void fault(void) {
    for (;;) {
    }
}

__attribute__((section(".vectors"), used)) static const void *const vectors[16] = {
    &__stack_top, (void *)reset_handler, (void *)fault, (void *)fault,
    (void *)fault, (void *)fault, (void *)fault, 0, 0, 0, 0,
    (void *)fault, (void *)fault, 0, (void *)fault, (void *)fault,
};
