/* libbar.so.1: bundled into demo.libs/ under a hashed file name, like auditwheel grafts. */
int bar_value(void) { return 7; }
