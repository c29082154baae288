/*  bitmap_font.h - small text drawn into RGB images without a font file:
 *  the contact sheet's names, scores, captions and reasons. Printable ASCII
 *  in a 5 x 7 pixel cell; any other character shows as '?'.
 */
#ifndef DF_BITMAP_FONT_H
#define DF_BITMAP_FONT_H

#include <stddef.h>
#include <stdint.h>

#define DF_FONT_W 6 /* a character's advance at scale 1: five columns of ink, one of space */
#define DF_FONT_H 9 /* a line's height at scale 1: seven rows of ink, two of space */

/*  Draws the first max_chars characters of text (UTF-8) into rgb (w x h,
 *  3 bytes a pixel) with its top-left corner at (x, y), each pixel of the
 *  glyphs a scale x scale square of color; whatever falls outside the image
 *  is left out. Returns the characters drawn. */
size_t df_font_draw(uint8_t *rgb, uint32_t w, uint32_t h, int x, int y, int scale, const char *text, size_t max_chars,
                    const uint8_t color[3]);

/*  text broken at spaces into lines of at most cols characters (a word
 *  longer than a line is cut) and drawn from (x, y) down, at most max_lines
 *  of them; when it does not all fit, the last line ends in "...". Returns
 *  the lines drawn. */
int df_font_draw_wrapped(uint8_t *rgb, uint32_t w, uint32_t h, int x, int y, int scale, size_t cols,
                         int max_lines, const char *text, const uint8_t color[3]);

#endif
