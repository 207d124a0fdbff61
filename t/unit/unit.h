/* unit.h: a tiny test harness for the pure parsers (plain C, no library). */

#ifndef _UNIT_H_INCLUDED_
#define _UNIT_H_INCLUDED_

#include <stdio.h>
#include <stdlib.h>
#include <string.h>


static unsigned  unit_passed;
static unsigned  unit_failed;
static unsigned  unit_checks_failed;   /* inside the running test */


/* one assertion; a failing one marks the running test as failed */
#define CHECK(cond)                                                           \
    do {                                                                      \
        if (!(cond)) {                                                        \
            unit_checks_failed++;                                             \
            fprintf(stderr, "#   %s:%d: CHECK(%s) failed\n",                  \
                    __FILE__, __LINE__, #cond);                               \
        }                                                                     \
    } while (0)

#define CHECK_INT(a, b)                                                       \
    do {                                                                      \
        long long  unit_a_ = (long long) (a), unit_b_ = (long long) (b);      \
        if (unit_a_ != unit_b_) {                                             \
            unit_checks_failed++;                                             \
            fprintf(stderr, "#   %s:%d: %s == %lld, expected %s == %lld\n",   \
                    __FILE__, __LINE__, #a, unit_a_, #b, unit_b_);            \
        }                                                                     \
    } while (0)

#define CHECK_STR(a, b)                                                       \
    do {                                                                      \
        const char  *unit_a_ = (a), *unit_b_ = (b);                           \
        if (unit_a_ == NULL || unit_b_ == NULL                                \
            || strcmp(unit_a_, unit_b_) != 0)                                 \
        {                                                                     \
            unit_checks_failed++;                                             \
            fprintf(stderr, "#   %s:%d: %s == \"%s\", expected \"%s\"\n",     \
                    __FILE__, __LINE__, #a,                                   \
                    unit_a_ ? unit_a_ : "(null)",                             \
                    unit_b_ ? unit_b_ : "(null)");                            \
        }                                                                     \
    } while (0)

#define CHECK_MEM(p, n, s)                                                    \
    do {                                                                      \
        size_t  unit_n_ = (size_t) (n);                                       \
        if (unit_n_ != sizeof(s) - 1                                          \
            || memcmp((p), (s), unit_n_) != 0)                                \
        {                                                                     \
            unit_checks_failed++;                                             \
            fprintf(stderr, "#   %s:%d: %s (%zu bytes) != \"%s\"\n",          \
                    __FILE__, __LINE__, #p, unit_n_, s);                      \
        }                                                                     \
    } while (0)


/* runs one test function and prints a TAP line for it */
#define RUN(test)                                                             \
    do {                                                                      \
        unit_checks_failed = 0;                                               \
        test();                                                               \
        if (unit_checks_failed == 0) {                                        \
            unit_passed++;                                                    \
            printf("ok %u - %s\n", unit_passed + unit_failed, #test);         \
        } else {                                                              \
            unit_failed++;                                                    \
            printf("not ok %u - %s\n", unit_passed + unit_failed, #test);     \
        }                                                                     \
    } while (0)


/* the last line: "<name>: N passed, M failed"; exit status 1 on failure */
#define UNIT_DONE(name)                                                       \
    do {                                                                      \
        printf("1..%u\n", unit_passed + unit_failed);                         \
        printf("%s: %u passed, %u failed\n", name, unit_passed, unit_failed); \
        return unit_failed ? 1 : 0;                                           \
    } while (0)

#endif /* _UNIT_H_INCLUDED_ */
