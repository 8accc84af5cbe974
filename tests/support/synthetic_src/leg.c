/* libleg.so.0: bundled in legacy/.libs/, found through the extension's DT_RPATH. */
int leg_value(void) { return 5; }
