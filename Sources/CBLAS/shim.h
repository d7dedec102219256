#include <cblas.h>

/* LAPACK's Cholesky factorisation and the inverse from it (libopenblas carries LAPACK; its
 * headers do not declare them). */
void dpotrf_(const char *uplo, const int *n, double *a, const int *lda, int *info);
void dpotri_(const char *uplo, const int *n, double *a, const int *lda, int *info);
