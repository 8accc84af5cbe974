/* libexdep.so.1: the README example's bundled library. */
int exdep_value(void) { return 11; }
