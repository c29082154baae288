/*  caption.h - training captions with the subject's identifier in place.
 *
 *  DreamBooth teaches a rare token ("TOK", or a name such as "@alice") to
 *  mean the subject, so every caption must carry it, the same way, with the
 *  subject's class beside it ("TOK person"). A caption from a sidecar file
 *  or a captioning model says "a man" or "the dog" where the identifier
 *  belongs; this puts it there.
 */
#ifndef DF_CAPTION_H
#define DF_CAPTION_H

#include "error.h"

typedef struct {
    const char *token;      /* "TOK" when NULL */
    const char *class_word; /* "person" when NULL */
} df_caption_opts;

/*  Cleans text (bytes that are not UTF-8 replaced by U+FFFD, control
 *  characters dropped, runs of spaces and commas collapsed, trimmed, a final
 *  full stop dropped) and places the identifier: text already naming the
 *  token keeps it where it is; otherwise the class word (with its article)
 *  becomes "TOK class", or without it the first generic word of the
 *  class's kind ("a man", "the woman" for a person; "a puppy", "the cat"
 *  for an animal; "a product" for anything else); with none, "TOK class, "
 *  goes in front. Empty text gives "a photo of TOK class". *out is
 *  malloc'd. */
int df_caption_place(const char *text, const df_caption_opts *o, char **out, df_error_t *err);

/*  Whether a class word names a person (person, man, woman, boy, girl,
 *  child...): the subjects whose photos get face checks by default. */
int df_caption_class_is_person(const char *class_word);

/*  "a photo of TOK class" (the template for photos without a caption). */
int df_caption_template(const df_caption_opts *o, char **out, df_error_t *err);

/*  The caption written beside a photo: PHOTO.txt or PHOTO.caption (the
 *  photo's extension replaced), on one line, trimmed; NULL when there is
 *  none (or it is empty). malloc'd. */
char *df_caption_sidecar(const char *photo);

#endif
