/* demo-tool: a PIE executable finding libbar.so.1 through an old-style DT_RPATH. */
#include <stdio.h>

int bar_value(void);

int main(void)
{
    printf("%d\n", bar_value());
    return 0;
}
