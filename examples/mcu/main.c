/* Runs the policy on fixed inputs and prints each action (semihosting), then how many
 * equal the actions JAX chose; exits 0 only if all do. */
#include <stdio.h>

#include "inputs.h"

int main(void) {
    int row, same = 0;
    for (row = 0; row < ROWS; ++row) {
        int64_t action[POLICY_ACTION_SIZE];
        float value[POLICY_VALUE_SIZE];
        if (policy_run(OBSERVATION[row], ACTION_MASK[row], action, value) != 0) return 2;
        printf("action %d %ld\n", row, (long)action[0]);
        same += action[0] == EXPECTED[row][0];
    }
    printf("matched %d/%d\n", same, ROWS);
    return same == ROWS ? 0 : 1;
}
