/* fuzz.h: what every libFuzzer target of fuzz/ shares. */

#ifndef FUZZ_H
#define FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


/* a property the parser promises; breaking it is a finding, like a crash */
#define FUZZ_ASSERT(cond)                                                    \
    do {                                                                     \
        if (!(cond)) {                                                       \
            fprintf(stderr, "%s:%d: property broken: %s\n",                  \
                    __FILE__, __LINE__, #cond);                              \
            abort();                                                         \
        }                                                                    \
    } while (0)


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


/* a copy of exactly n bytes on the heap: ASan sees a read past its end */
static inline unsigned char *
fuzz_dup(const uint8_t *data, size_t n)
{
    unsigned char  *p;

    p = malloc(n ? n : 1);
    FUZZ_ASSERT(p != NULL);

    if (n) {
        memcpy(p, data, n);
    }

    return p;
}


/* the same, NUL-terminated */
static inline char *
fuzz_strdup(const uint8_t *data, size_t n)
{
    char  *p;

    p = malloc(n + 1);
    FUZZ_ASSERT(p != NULL);

    if (n) {
        memcpy(p, data, n);
    }

    p[n] = '\0';

    return p;
}

#endif /* FUZZ_H */
