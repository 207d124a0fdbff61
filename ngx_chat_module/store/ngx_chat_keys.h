/* ngx_chat_keys.h: every Redis key and channel of ngx_chat: its name, what
 * it holds, and its slot tag. */

#ifndef _NGX_CHAT_KEYS_H_INCLUDED_
#define _NGX_CHAT_KEYS_H_INCLUDED_


/*
 * A name is a prefix and an id. The slot tag is the part of the name a
 * Redis Cluster hashes ({...}): every key one script touches must have the
 * same one. The tag column says which part is the tag:
 *
 *     conv    the conversationId: "chat:s:{<conv>}"
 *     user    the userId: "chat:p:{<user>}"
 *     own     the whole name (a key with a slot of its own)
 *     slot    a text that hashes to a given slot (one key per slot)
 *
 * A tagged prefix ends with NGX_CHAT_TAG_OPEN; the code writes the id and
 * then NGX_CHAT_TAG_CLOSE (the lead re-tags a key here and where it is
 * written; one Redis hashes nothing and does not mind the braces).
 *
 * In a cluster, messaging_rebuild.lua takes the epoch of its conversation's
 * slot, and route.lua (chat:routes with any conversation's keys) is
 * replaced by route_cluster.lua (the conversation's sharded channel,
 * NGX_CHAT_CHANNEL_CONV). Scripts that
 * still cross tags, to be split or re-tagged for a cluster: the presence
 * scripts (chat:p:{<user>} and chat:p:expiry), history_latest.lua (the
 * keys of several conversations).
 *
 * The Lua scripts (store/lua) write some names themselves: chat:routes,
 * chat:p:{, chat:ls:{, chat:u:, chat:w:, chat:presence:.
 */

#define NGX_CHAT_TAG_OPEN       "{"
#define NGX_CHAT_TAG_CLOSE      "}"

                                          /* tag   what */

/* a conversation */
#define NGX_CHAT_KEY_MEMBERS    "chat:m:{"   /* conv  set: member ids, the
                                                      membership cache ("" marks
                                                      one with no members;
                                                      "!<id>": a member of a
                                                      direct conversation with
                                                      a block in it; "?<id>"
                                                      beside "<id>": one that
                                                      has not accepted yet) */
#define NGX_CHAT_KEY_SEQ        "chat:s:{"   /* conv  the last seq handed
                                                      out */
#define NGX_CHAT_KEY_GEN        "chat:g:{"   /* conv  the membership
                                                      generation */
#define NGX_CHAT_KEY_HISTORY    "chat:h:{"   /* conv  list: recent messages,
                                                      oldest first */
#define NGX_CHAT_KEY_DEDUP      "chat:d:{"   /* conv  <conv>:<user>:<client
                                                      id>: an accepted SEND */
#define NGX_CHAT_KEY_TYPING     "chat:t:{"   /* conv  <conv>:<user>: the
                                                      typing limiter */
#define NGX_CHAT_KEY_READ       "chat:r:{"   /* conv  hash: user -> read
                                                      watermark */
#define NGX_CHAT_KEY_DELIVERED  "chat:dl:{"  /* conv  hash: user -> delivered
                                                      watermark */
#define NGX_CHAT_KEY_STAMP      "chat:sw:{"  /* conv  a cluster: the slot
                                                      epoch the counter was
                                                      last re-based in */
#define NGX_CHAT_KEY_CHANGES    "chat:hc:{"  /* conv  list: the change events
                                                      of chat:h: (edits,
                                                      deletes, reactions),
                                                      oldest first */

/* a user */
#define NGX_CHAT_KEY_PRESENCE   "chat:p:{"   /* user  sorted set: session ids
                                                      by expiry */
#define NGX_CHAT_KEY_LAST_SEEN  "chat:ls:{"  /* user  last seen (ms) */

/* the whole chat */
#define NGX_CHAT_KEY_EXPIRY     "chat:p:expiry"
                                             /* own   sorted set: users by
                                                      their latest expiry */
#define NGX_CHAT_KEY_ROUTES     "chat:routes"
                                             /* own   hash: user -> routes of
                                                      the workers with its
                                                      sessions */
#define NGX_CHAT_KEY_EPOCH      "chat:epoch" /* own   when this Redis's data
                                                      began (ms) */
#define NGX_CHAT_KEY_EPOCH_SLOT "chat:epoch:{"
                                             /* slot  a cluster: the epoch
                                                      of one slot, tagged with
                                                      ngx_chat_redis_slot_tag()
                                                      of the slot */

/* a SockJS HTTP session */
#define NGX_CHAT_KEY_SOCKJS     "chat:sj:"   /* own   <session id>: the relay
                                                      route of the worker
                                                      that holds it */

/* pub/sub channels (no slots; in a cluster those with a tag are sharded) */
#define NGX_CHAT_CHANNEL_WORKER    "chat:w:"        /* <route>: a worker */
#define NGX_CHAT_CHANNEL_USER      "chat:u:"        /* <user>: while routes
                                                       are lost */
#define NGX_CHAT_CHANNEL_PRESENCE  "chat:presence:" /* <user>: presence
                                                       events, and "cut
                                                       <other>" when a block
                                                       ends <other>'s
                                                       watching */
#define NGX_CHAT_CHANNEL_SOCKJS    "chat:sjw:"      /* <route>: a worker's
                                                       SockJS relay */

/* a cluster: sharded channels (SPUBLISH / SSUBSCRIBE), in their tag's slot;
 * the user's channel is then "chat:u:{<user>}" */
#define NGX_CHAT_CHANNEL_CONV      "chat:c:{"       /* conv  what route()
                                                       publishes to its
                                                       members */


#endif /* _NGX_CHAT_KEYS_H_INCLUDED_ */
