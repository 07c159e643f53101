using System.Globalization;
using System.Text;

namespace Infer.Templates;

/// <summary>Python's datetime.strftime for the C-locale directives (English names), including glibc's %-d style.</summary>
internal static class Strftime
{
    public static string Format(DateTime t, string format)
    {
        var inv = CultureInfo.InvariantCulture;
        var sb = new StringBuilder();
        for (int i = 0; i < format.Length; i++)
        {
            char c = format[i];
            if (c != '%' || i + 1 >= format.Length)
            {
                sb.Append(c);
                continue;
            }
            char d = format[++i];
            bool noPad = false;
            if (d == '-' && i + 1 < format.Length)
            {
                noPad = true;
                d = format[++i];
            }
            string Num(int v, int width) => noPad ? v.ToString(inv) : v.ToString(inv).PadLeft(width, '0');
            switch (d)
            {
                case 'Y': sb.Append(t.Year.ToString(inv)); break;
                case 'y': sb.Append(Num(t.Year % 100, 2)); break;
                case 'm': sb.Append(Num(t.Month, 2)); break;
                case 'd': sb.Append(Num(t.Day, 2)); break;
                case 'e': sb.Append(t.Day.ToString(inv).PadLeft(2)); break;
                case 'H': sb.Append(Num(t.Hour, 2)); break;
                case 'I': sb.Append(Num(t.Hour % 12 == 0 ? 12 : t.Hour % 12, 2)); break;
                case 'M': sb.Append(Num(t.Minute, 2)); break;
                case 'S': sb.Append(Num(t.Second, 2)); break;
                case 'f': sb.Append((t.Ticks % TimeSpan.TicksPerSecond / 10).ToString("000000", inv)); break;
                case 'p': sb.Append(t.Hour < 12 ? "AM" : "PM"); break;
                case 'j': sb.Append(Num(t.DayOfYear, 3)); break;
                case 'B': sb.Append(inv.DateTimeFormat.GetMonthName(t.Month)); break;
                case 'b' or 'h': sb.Append(inv.DateTimeFormat.GetAbbreviatedMonthName(t.Month)); break;
                case 'A': sb.Append(inv.DateTimeFormat.GetDayName(t.DayOfWeek)); break;
                case 'a': sb.Append(inv.DateTimeFormat.GetAbbreviatedDayName(t.DayOfWeek)); break;
                case 'w': sb.Append(((int)t.DayOfWeek).ToString(inv)); break;
                case 'u': sb.Append((t.DayOfWeek == DayOfWeek.Sunday ? 7 : (int)t.DayOfWeek).ToString(inv)); break;
                case 'F': sb.Append(t.ToString("yyyy-MM-dd", inv)); break;
                case 'T': sb.Append(t.ToString("HH:mm:ss", inv)); break;
                case 'D': sb.Append(t.ToString("MM/dd/yy", inv)); break;
                case 'R': sb.Append(t.ToString("HH:mm", inv)); break;
                case 'c':
                    sb.Append(t.ToString("ddd MMM ", inv)).Append(t.Day.ToString(inv).PadLeft(2)).Append(t.ToString(" HH:mm:ss yyyy", inv));
                    break;
                case 'x': sb.Append(t.ToString("MM/dd/yy", inv)); break;
                case 'X': sb.Append(t.ToString("HH:mm:ss", inv)); break;
                case 'Z': break;
                case 'z': break;
                case 'n': sb.Append('\n'); break;
                case 't': sb.Append('\t'); break;
                case '%': sb.Append('%'); break;
                default: sb.Append('%').Append(d); break;
            }
        }
        return sb.ToString();
    }
}
