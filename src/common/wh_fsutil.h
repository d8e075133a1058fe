/* wh_fsutil.h - small file system helpers shared by the caches. */
#ifndef WH_FSUTIL_H
#define WH_FSUTIL_H

/* wh_mkdirs - mkdir -p |path| with mode 0700.  0 or -errno. */
int wh_mkdirs(const char *path);

/* wh_cache_home - "$XDG_CACHE_HOME/wormhole/SUB" or
 * "$HOME/.cache/wormhole/SUB" (without "/SUB" when |sub| is NULL); NULL if
 * neither variable is set.  Caller frees. */
char *wh_cache_home(const char *sub);

#endif /* WH_FSUTIL_H */
