/*  face_detect.cpp - see face_detect.h. OpenCV throws; nothing here lets an
 *  exception out to the C callers. */
#include "face_detect.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <unistd.h>

#include <opencv2/imgproc.hpp>
#include <opencv2/objdetect.hpp>

extern "C" {
#include "photo_quality.h"
}

#ifndef DF_HAAR_DIR
#define DF_HAAR_DIR "/usr/share/opencv4/haarcascades"
#endif

#define DETECT_SIDE 1024 /* faces are found on the photo shrunk to this */

struct _df_face_detector_t {
    cv::CascadeClassifier face, eye;
};

extern "C" df_face_detector_t *df_face_detector_new(const char *cascade_dir, df_error_t *err)
{
    df_face_detector_t *self = nullptr;
    const char *where = cascade_dir ? cascade_dir : DF_HAAR_DIR;
    try {
        self = new df_face_detector_t;
        const std::string dir = where;
        const std::string f = dir + "/haarcascade_frontalface_default.xml", e = dir + "/haarcascade_eye.xml";
        /* Checked first: OpenCV would log its own complaint to stderr. */
        if (access(f.c_str(), R_OK) != 0 || access(e.c_str(), R_OK) != 0 || !self->face.load(f) ||
            !self->eye.load(e)) {
            df_error_set(err, DF_E_NOT_FOUND, "faces: cannot load OpenCV's cascades %s and %s (Debian package "
                         "opencv-data)", f.c_str(), e.c_str());
            delete self;
            return nullptr;
        }
    } catch (const std::exception &x) {
        df_error_set(err, DF_E_FORMAT, "faces: cascades in %s: %s", where, x.what());
        delete self;
        return nullptr;
    } catch (...) {
        df_error_set(err, DF_E_FORMAT, "faces: cascades in %s: an unknown failure", where);
        delete self;
        return nullptr;
    }
    return self;
}

extern "C" void df_face_detector_destroy(df_face_detector_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    delete *self_p;
    *self_p = nullptr;
}

/*  The face's own sharpness: Laplacian variance of its box at 128x128. */
static double face_sharpness(const cv::Mat &gray, const cv::Rect &box)
{
    cv::Mat face, lap;
    cv::resize(gray(box), face, cv::Size(128, 128), 0, 0, box.width > 128 ? cv::INTER_AREA : cv::INTER_CUBIC);
    cv::Laplacian(face, lap, CV_64F, 1);
    cv::Scalar mean, dev;
    cv::meanStdDev(lap, mean, dev);
    return dev[0] * dev[0];
}

extern "C" int df_face_detect(df_face_detector_t *self, const df_image *img, df_face *faces, int cap, int *count,
                              df_error_t *err)
{
    *count = 0;
    if (!img->width || !img->height)
        return df_error_set(err, DF_E_INVALID, "faces: an empty image");
    try {
        cv::Mat rgb((int)img->height, (int)img->width, CV_8UC3, img->rgb), gray, small;
        cv::cvtColor(rgb, gray, cv::COLOR_RGB2GRAY);
        const double s = std::min(1.0, (double)DETECT_SIDE / std::max(img->width, img->height));
        if (s < 1)
            cv::resize(gray, small, cv::Size(), s, s, cv::INTER_AREA);
        else
            small = gray;
        cv::equalizeHist(small, small);
        std::vector<cv::Rect> found;
        const int least = std::max(24, (int)(0.06 * std::min(small.cols, small.rows)));
        self->face.detectMultiScale(small, found, 1.1, 6, 0, cv::Size(least, least));
        std::sort(found.begin(), found.end(), [](const cv::Rect &a, const cv::Rect &b) { return a.area() > b.area(); });
        *count = (int)found.size();
        for (int i = 0; i < (int)found.size() && i < cap; i++) {
            const cv::Rect &r = found[(size_t)i];
            df_face *f = &faces[i];
            std::memset(f, 0, sizeof *f);
            f->x = (float)(r.x / s), f->y = (float)(r.y / s), f->w = (float)(r.width / s), f->h = (float)(r.height / s);
            /* Eyes: in the face's upper half, the two largest, left to right. */
            cv::Rect upper(r.x, r.y, r.width, r.height / 2);
            std::vector<cv::Rect> eyes;
            self->eye.detectMultiScale(small(upper), eyes, 1.1, 4, 0, cv::Size(r.width / 10, r.width / 10));
            std::sort(eyes.begin(), eyes.end(), [](const cv::Rect &a, const cv::Rect &b) { return a.area() > b.area(); });
            if (eyes.size() > 2)
                eyes.resize(2);
            /* Two boxes overlapping are one eye found twice: the larger stays. */
            if (eyes.size() == 2 && (eyes[0] & eyes[1]).area() > 0)
                eyes.resize(1);
            std::sort(eyes.begin(), eyes.end(), [](const cv::Rect &a, const cv::Rect &b) { return a.x < b.x; });
            f->eyes = (int)eyes.size();
            for (size_t k = 0; k < eyes.size(); k++) {
                float *c = k == 0 ? f->left_eye : f->right_eye;
                c[0] = (float)((upper.x + eyes[k].x + eyes[k].width / 2.0) / s);
                c[1] = (float)((upper.y + eyes[k].y + eyes[k].height / 2.0) / s);
            }
            if (f->eyes == 2)
                f->roll_deg = (float)(std::atan2(f->right_eye[1] - f->left_eye[1], f->right_eye[0] - f->left_eye[0]) *
                                      180.0 / M_PI);
            cv::Rect full((int)f->x, (int)f->y, (int)f->w, (int)f->h);
            full &= cv::Rect(0, 0, gray.cols, gray.rows);
            double c = full.area() ? face_sharpness(gray, full) / DF_SHARPNESS_FULL : 0;
            f->clarity = (float)(std::min(1.0, c) * (f->eyes == 2 ? 1.0 : 0.85));
        }
    } catch (const std::exception &x) {
        *count = 0;
        return df_error_set(err, DF_E_UNSUPPORTED, "faces: %s", x.what());
    } catch (...) {
        *count = 0;
        return df_error_set(err, DF_E_UNSUPPORTED, "faces: an unknown failure");
    }
    return DF_OK;
}

extern "C" int df_face_align(const df_image *img, const df_face *face, df_framing framing, uint32_t w, uint32_t h,
                             df_image *out, df_error_t *err)
{
    std::memset(out, 0, sizeof *out);
    if (!w || !h || !img->width || !img->height || face->w <= 0)
        return df_error_set(err, DF_E_INVALID, "faces: align %ux%u to %ux%u: empty", img->width, img->height, w, h);
    try {
        cv::Mat rgb((int)img->height, (int)img->width, CV_8UC3, img->rgb), turned;
        const cv::Point2f centre(face->x + face->w / 2, face->y + face->h / 2);
        /* OpenCV's positive angles turn counter-clockwise: by the roll, the eyes come level. */
        cv::Mat m = cv::getRotationMatrix2D(centre, face->eyes == 2 ? face->roll_deg : 0.0, 1.0);
        cv::warpAffine(rgb, turned, m, rgb.size(), cv::INTER_CUBIC, cv::BORDER_REFLECT101);
        /* The window: its size from the face, its place from the framing. */
        double ww, wh, fx, fy;
        if (framing == DF_FRAME_BODY)
            wh = 10.0 * face->h, ww = wh * w / h, fx = 0.5, fy = 0.12;
        else
            ww = 3.0 * face->w, wh = ww * h / w, fx = 0.5, fy = 0.4;
        const double fit = std::min({1.0, img->width / ww, img->height / wh}); /* never wider than the photo */
        ww *= fit, wh *= fit;
        double x0 = centre.x - fx * ww, y0 = centre.y - fy * wh;
        x0 = std::max(0.0, std::min(x0, img->width - ww)), y0 = std::max(0.0, std::min(y0, img->height - wh));
        cv::Rect win((int)std::lround(x0), (int)std::lround(y0), std::max(1, (int)std::floor(ww)),
                     std::max(1, (int)std::floor(wh)));
        win &= cv::Rect(0, 0, turned.cols, turned.rows);
        cv::Mat crop = turned(win).clone();
        out->rgb = (uint8_t *)std::malloc((size_t)crop.cols * crop.rows * 3);
        if (!out->rgb)
            return df_error_set(err, DF_E_NOMEM, "faces: out of memory");
        for (int r = 0; r < crop.rows; r++)
            std::memcpy(out->rgb + (size_t)r * crop.cols * 3, crop.ptr(r), (size_t)crop.cols * 3);
        out->width = (uint32_t)crop.cols, out->height = (uint32_t)crop.rows;
    } catch (const std::exception &x) {
        std::free(out->rgb);
        std::memset(out, 0, sizeof *out);
        return df_error_set(err, DF_E_UNSUPPORTED, "faces: %s", x.what());
    } catch (...) {
        std::free(out->rgb);
        std::memset(out, 0, sizeof *out);
        return df_error_set(err, DF_E_UNSUPPORTED, "faces: an unknown failure");
    }
    return DF_OK;
}
