/* push_presence.h: whether users have a live gateway session, as the
 * push worker asks Redis (the one place that knows the presence keys). */

#ifndef PUSH_PRESENCE_H
#define PUSH_PRESENCE_H


#include <stddef.h>


/* addr: host:port or a unix socket path; 0, or -1 (logged, retried later) */
int psh_presence_init(const char *addr, long long db);

/*
 * online[i] = 1 if users[i] has a live session. When Redis cannot be
 * asked, everyone counts as offline (a needless notification is better
 * than a lost one). 0, or -1 when Redis failed (logged).
 */
int psh_online(char **users, size_t n, int *online);

void psh_presence_close(void);


#endif /* PUSH_PRESENCE_H */
