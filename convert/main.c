/* qforge — command-line front end (placeholder until the CLI lands in this session). */
#include "qforge.h"
#include <stdio.h>
int main(void) { fprintf(stderr, "qforge %s\n", QF_VERSION_STRING); return 0; }
