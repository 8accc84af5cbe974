/* libfoo.so.1: a custom library that is on no system; wheels link to it without bundling it. */
int foo_value(void) { return 42; }
