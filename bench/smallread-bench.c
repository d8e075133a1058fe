/*
 * smallread-bench.c - how the host might read a batch of small cold files:
 * as it does (the first with preadv2 RWF_NOWAIT, and on a miss
 * POSIX_FADV_WILLNEED for the others, then pread each: mode 0) or all of
 * the batch as io_uring reads submitted at once (mode 1).  A tree of 100
 * directories d00..d99 of 100 files f000..f099 of 10 KiB; evict it from
 * the page cache before each run.
 *
 *   cc -O2 -o smallread-bench bench/smallread-bench.c -luring
 *   smallread-bench MODE BATCH TREE
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <liburing.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>
static double now(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec/1e9;}
static double cpu(void){struct rusage r;getrusage(RUSAGE_SELF,&r);return r.ru_utime.tv_sec+r.ru_utime.tv_usec/1e6+r.ru_stime.tv_sec+r.ru_stime.tv_usec/1e6;}
int main(int argc,char**argv){
  int mode=atoi(argv[1]), batch=atoi(argv[2]); const char*root=argv[3];
  static char buf[64][10241]; int fds[64]; struct io_uring ring;
  if(mode==1) io_uring_queue_init(64,&ring,0);
  double w0=now(),c0=cpu(); long bytes=0;
  for(int d=0;d<100;d++) for(int i=0;i<100;i+=batch){
    int n=batch; if(i+n>100) n=100-i;
    for(int k=0;k<n;k++){char p[512]; snprintf(p,sizeof p,"%s/d%02d/f%03d",root,d,i+k); fds[k]=open(p,O_RDONLY|O_CLOEXEC);}
    if(mode==0){
      int ahead=0;
      for(int k=0;k<n;k++){
        if(!ahead){ struct iovec v={buf[k],10241}; ssize_t r=preadv2(fds[k],&v,1,0,RWF_NOWAIT);
          if(r<0){ ahead=1; for(int q=k+1;q<n;q++) posix_fadvise(fds[q],0,10240,POSIX_FADV_WILLNEED); r=pread(fds[k],buf[k],10241,0);} bytes+=r; }
        else bytes+=pread(fds[k],buf[k],10241,0);
      }
    } else {
      for(int k=0;k<n;k++){ struct io_uring_sqe*s=io_uring_get_sqe(&ring); io_uring_prep_read(s,fds[k],buf[k],10241,0); s->user_data=k; }
      io_uring_submit_and_wait(&ring,n);
      for(int k=0;k<n;k++){ struct io_uring_cqe*c; io_uring_wait_cqe(&ring,&c); bytes+=c->res; io_uring_cqe_seen(&ring,c);}
    }
    for(int k=0;k<n;k++) close(fds[k]);
  }
  printf("mode %d batch %d: wall %.3f cpu %.3f bytes %ld\n",mode,batch,now()-w0,cpu()-c0,bytes);
}
