/*  face_detect.h - faces and eyes in a photo, for preparing photos of a
 *  person: exactly one face, large enough, eyes found, sharp.
 *
 *  Behind this interface: OpenCV's Haar cascades (Debian's opencv-data),
 *  frontal faces then eyes within each face's upper half, on the photo's
 *  luminance shrunk to at most 1024 px and equalised. A better detector
 *  (a landmark model) can replace it without touching the callers. The
 *  implementation is the project's one C++ file, as OpenCV 4 has no C API.
 */
#ifndef DF_FACE_DETECT_H
#define DF_FACE_DETECT_H

#ifdef __cplusplus
extern "C" {
#endif

#include "image_decode.h"

typedef struct {
    float x, y, w, h;            /* the face's box in the photo's pixels */
    int eyes;                    /* eyes found (0, 1 or 2) */
    float left_eye[2], right_eye[2]; /* centres (x, y), in the photo's pixels; left as seen in the photo */
    float roll_deg;              /* the eye line's angle from level (two eyes), clockwise positive */
    float clarity;               /* in [0, 1]: the face's own sharpness (Laplacian variance of the face at
                                  * 128x128 over DF_SHARPNESS_FULL, capped), times 0.85 without both eyes */
} df_face;

typedef struct _df_face_detector_t df_face_detector_t;

/*  Loads the cascades from cascade_dir (NULL: the directory the build found). */
df_face_detector_t *df_face_detector_new(const char *cascade_dir, df_error_t *err);
void df_face_detector_destroy(df_face_detector_t **self_p);

/*  Finds faces in img, largest first: *count gets how many (all of them),
 *  faces the first `cap`. */
int df_face_detect(df_face_detector_t *self, const df_image *img, df_face *faces, int cap, int *count,
                   df_error_t *err);

/*  Framing of a portrait around a face. */
typedef enum {
    DF_FRAME_HEAD = 1,           /* head and shoulders: the face a third of the width, its centre 40% down */
    DF_FRAME_BODY = 2,           /* full body: the face a tenth of the height, 12% down */
} df_framing;

/*  img turned so the face's eyes are level, and cut to a w:h window framed
 *  around the face as `framing` says (clamped inside the photo: at an edge
 *  the face moves off its mark rather than the window reaching past it;
 *  the corners a turn uncovers are filled by reflection), into out at the
 *  window's own resolution. */
int df_face_align(const df_image *img, const df_face *face, df_framing framing, uint32_t w, uint32_t h,
                  df_image *out, df_error_t *err);

#ifdef __cplusplus
}
#endif

#endif
