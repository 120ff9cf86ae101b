#include "testlib.h"
int main(void) { CHECK(1); TEST_DONE(); }
